"""The Idempotency-Key's shape and what is derived from it, without any server: the pattern the
OpenAPI document gives accepts exactly the keys the gateway takes, every key gives orders a valid
client_request_id, and the fingerprint is of the order as understood, not of its JSON text."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import mapping
from gateway.idempotency import KEY_PATTERN, client_request_id, fingerprint, parse_key
from gateway.problems import Problem
from gateway.schemas import CreateOrderIn
from orderflow_contracts.identifiers import is_client_request_id

header_values = st.text(st.characters(max_codepoint=0x7F) | st.sampled_from('"\\ é'), max_size=260)


def taken(value: str) -> bool:
    """Whether the gateway takes the header value; it refuses with 400 IDEMPOTENCY_KEY_INVALID only."""
    try:
        parse_key(value)
    except Problem as refused:
        if (refused.status, refused.code) != (400, "IDEMPOTENCY_KEY_INVALID"):
            raise
        return False
    return True


@given(header_values | st.from_regex(KEY_PATTERN, fullmatch=True))
def test_the_documented_pattern_accepts_exactly_the_keys_the_gateway_takes(value: str) -> None:
    assert taken(value) == bool(re.fullmatch(KEY_PATTERN, value))


@given(st.from_regex(KEY_PATTERN, fullmatch=True))
def test_every_key_gives_a_valid_client_request_id(value: str) -> None:
    assert is_client_request_id(client_request_id(parse_key(value)))


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("abc", "abc"),
        ('"abc"', "abc"),
        ('"a b"', "a b"),
        ('"say \\"hi\\" \\\\o/"', 'say "hi" \\o/'),
    ],
)
def test_a_quoted_key_is_its_unescaped_string(value: str, key: str) -> None:
    assert parse_key(value) == key


def test_the_fingerprint_is_of_the_order_as_understood() -> None:
    """The customer named or left to the token, the lines in any order: the same order."""
    named = CreateOrderIn.model_validate_json(
        '{"customer_id": "c-1", "items": [{"quantity": 2, "sku": "SKU-1"}, {"sku": "SKU-2", "quantity": 1}]}'
    )
    reordered = CreateOrderIn.model_validate(
        {"items": [{"sku": "SKU-2", "quantity": 1}, {"sku": "SKU-1", "quantity": 2}]}
    )
    other = CreateOrderIn.model_validate({"items": [{"sku": "SKU-1", "quantity": 3}]})

    def of(body: CreateOrderIn, customer_id: str = "c-1") -> str:
        return fingerprint(mapping.understood_order(customer_id, body))

    assert of(named) == of(reordered)
    assert of(other) != of(reordered)
    assert of(reordered, "c-2") != of(reordered)
