"""Every event type follows the versioning rule, `orderflow.<service>.<event>.v<N>` (docs/events.md),
and its model's name says the same version."""

import re

import pytest

from orderflow_contracts.events import EVENT_TYPE_PATTERN, EventPayload


@pytest.mark.parametrize("model", EventPayload.__subclasses__(), ids=lambda model: model.__name__)
def test_each_event_type_names_its_service_event_and_version(model: type[EventPayload]) -> None:
    rule = re.fullmatch(EVENT_TYPE_PATTERN, model.TYPE)

    assert rule is not None, f"{model.TYPE} does not follow orderflow.<service>.<event>.v<N>"
    assert model.__name__.endswith(f"V{rule['version']}")
