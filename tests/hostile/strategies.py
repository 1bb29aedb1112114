"""Hypothesis strategies for what a hostile or careless client sends: text with odd unicode, NUL
bytes and huge lengths, ids that are almost right, integers far outside any range, and repeated
fields that are empty or huge. Mixed with valid values, so some requests get past validation."""

import uuid
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from orderflow_contracts.identifiers import (
    CLIENT_REQUEST_ID_PATTERN,
    CUSTOMER_ID_PATTERN,
    MAX_ORDER_LINES,
    MAX_SKU_QUANTITY,
    SKU_PATTERN,
)

T = TypeVar("T")

# Deterministic (the same examples on every run, so CI never flakes on a new one) and bounded.
# Shrinking stays on: a failure is reported with its smallest example.
HOSTILE_EXAMPLES = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1

# Characters that break naive handling: NUL and control characters, line breaks a regex `$` may
# accept, invisible and direction-changing marks, digits and letters from other scripts that
# `int()` or case folding accept, astral planes, and the punctuation of URLs, JSON and SQL.
ODD_CHARACTERS = (
    "\x00",
    "\n",
    "\r",
    "\t",
    "\x7f",
    "\x85",
    "\u2028",
    "\u200b",
    "\u202e",
    "\ufeff",
    "e\u0301",
    "\u0130",
    "\u00df",
    "\u0663",
    "\uff21",
    "\U0001d518",
    "\U0001f600",
    "\U0010ffff",
    "%",
    "/",
    "'",
    '"',
    "\\",
    "{",
    "}",
    "-",
    ".",
    ":",
)

odd_text = st.lists(st.sampled_from(ODD_CHARACTERS), max_size=20).map("".join)

# Far beyond any id, yet under gRPC's 4 MB message limit (a bigger message is refused by the
# transport before our code runs).
huge_text = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["A", "\x00", "\u00e9", "\U0001f600", "SKU-1,"]),
    st.integers(min_value=10_000, max_value=100_000),
)


def almost(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with something odd before, after or instead of a part of it."""
    return st.one_of(
        st.builds(lambda value, odd: value + odd, valid, odd_text),
        st.builds(lambda value, odd: odd + value, valid, odd_text),
        valid.map(str.upper),
        valid.map(str.lower),
        valid.map(lambda value: value + "\n"),
        valid.map(lambda value: value * 3),
    )


def hostile_text(*valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Any text a client could send where `valid` values are expected, those included."""
    return st.one_of(*valid, *(almost(strategy) for strategy in valid), st.text(), odd_text, huge_text)


customer_ids = st.from_regex(CUSTOMER_ID_PATTERN, fullmatch=True)
skus = st.from_regex(SKU_PATTERN, fullmatch=True)
client_request_ids = st.from_regex(CLIENT_REQUEST_ID_PATTERN, fullmatch=True)
order_ids = st.uuids().map(str)
odd_order_ids = st.one_of(
    st.uuids().map(lambda value: str(value).upper()),
    st.uuids().map(lambda value: value.hex),
    st.uuids().map(lambda value: "{" + str(value) + "}"),
    st.uuids().map(lambda value: value.urn),
    st.just(str(uuid.UUID(int=0))),
)

hostile_int32 = st.one_of(
    st.integers(min_value=INT32_MIN, max_value=INT32_MAX),
    st.sampled_from([INT32_MIN, -1, 0, 1, MAX_SKU_QUANTITY, MAX_SKU_QUANTITY + 1, INT32_MAX]),
)

hostile_int64 = st.one_of(
    st.integers(min_value=-(2**63), max_value=INT64_MAX),
    st.sampled_from([-(2**63), -1, 0, 1, INT32_MAX + 1, INT64_MAX]),
)


def repeated(
    hostile: st.SearchStrategy[T], plain: st.SearchStrategy[T], *, huge: st.SearchStrategy[list[T]]
) -> st.SearchStrategy[list[T]]:
    """A repeated field: empty, a few `hostile` elements, about MAX_ORDER_LINES `plain` ones, or `huge`."""
    return st.one_of(
        st.just([]),
        st.lists(hostile, min_size=1, max_size=5),
        st.lists(plain, min_size=MAX_ORDER_LINES - 1, max_size=MAX_ORDER_LINES + 2),
        huge,
    )
