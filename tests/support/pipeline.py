"""The whole pipeline for tests that drive it from outside (orderflow_devstack.pipeline), as every suite
starts it: tokens from tests.support.tokens, generous rate limits (tests.support.rate_limits: these
suites send bursts from one address) and quick consumer retries."""

from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypedDict, Unpack

import pytest

from orderflow_devstack import pipeline as devstack_pipeline
from orderflow_devstack.infra import Infrastructure
from orderflow_devstack.pipeline import Pipeline
from orderflow_devstack.supervision import Supervisor
from tests.support.rate_limits import GENEROUS_RATE_LIMITS_ENV
from tests.support.tokens import JWT_SECRET

__all__ = ["Pipeline", "pytest_runtest_makereport", "running_pipeline"]

_TEST_SETTINGS = {
    "ORDERFLOW_LOYALTY_RETRY_BASE_SECONDS": "0.2",
    "ORDERFLOW_LOYALTY_RETRY_MAX_SECONDS": "1",
    **GENEROUS_RATE_LIMITS_ENV,
}


class _Options(TypedDict, total=False):
    """The rest of orderflow_devstack.pipeline.running_pipeline's options, passed on as they are."""

    replicas: Mapping[str, int] | None
    supervisor: Supervisor | None
    web: bool


def running_pipeline(
    infra: Infrastructure,
    work: Path,
    catalog: Sequence[Mapping[str, object]],
    *,
    prefix: str,
    env: Mapping[str, str] | None = None,
    **options: Unpack[_Options],
) -> AbstractContextManager[Pipeline]:
    """orderflow_devstack.pipeline.running_pipeline with the tests' settings; `env` overrides them."""
    return devstack_pipeline.running_pipeline(
        infra, work, catalog, prefix=prefix, jwt_secret=JWT_SECRET, env={**_TEST_SETTINGS, **(env or {})}, **options
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, show what each service logged last: the first place to look. A conftest whose
    tests use a Pipeline imports this hook."""
    report = yield
    pipelines = [value for value in getattr(item, "funcargs", {}).values() if isinstance(value, Pipeline)]
    if report.failed:
        for running in pipelines:
            for name, service in running.services.items():
                report.sections.append((f"{name} log (tail)", "\n".join(service.tail(40))))
    return report
