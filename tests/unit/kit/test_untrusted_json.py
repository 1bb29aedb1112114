"""Whatever the input, parsing JSON from outside is refused as NotJson (a ValueError) or read as json.loads reads it."""

import pytest

from orderflow_kit import untrusted_json


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[" * 100_000 + "]" * 100_000, '{"a": ' * 5000 + "1" + "}" * 5000],
    ids=["broken", "empty", "arrays nested 100,000 deep", "objects nested 5,000 deep"],
)
def test_what_is_not_json_it_can_read_is_refused_as_not_json(text: str) -> None:
    with pytest.raises(untrusted_json.NotJson):
        untrusted_json.loads(text)


def test_json_is_read_as_json_loads_reads_it() -> None:
    assert untrusted_json.loads(b'{"order_id": "x", "n": [1, 2.5, null]}') == {"order_id": "x", "n": [1, 2.5, None]}
