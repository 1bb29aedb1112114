"""Fault flags: break orderflow on purpose and watch its guarantees hold (tests, chaos runs, demos).

One switch, off by default, from three sources, each overriding the one before flag by flag:
- `ORDERFLOW_FAULTS="relay_crash_after_publish,inventory_delay_ms=1500"`: read at every use;
- `ORDERFLOW_FAULTS_FILE=/path/to/file`: the same syntax (commas or new lines, `#` comments),
  re-read whenever the file changes, so a running demo is broken and healed without a restart.
  A missing or empty file means no faults from it;
- the JetStream key-value bucket `ORDERFLOW_FAULTS` (orderflow_kit.fault_bucket), the same syntax
  again, which every service watches in the background and hands over with `use_bucket_spec`:
  one switch for every replica, set through the gateway (`PUT /v1/admin/faults`).

Each injection point calls one function of this module at the place the fault acts. With nothing
set, that call returns at once (two environment look-ups and a module variable). When a fault
fires it logs a warning, `fault injected`, naming it. A spec that does not parse is logged as an
error once and ignored (no fault at all from that source), never half applied.

The flags (docs/fault-flags.md says what each one shows):
- `relay_crash_after_publish`: the outbox relay SIGKILLs its process after the broker acked an
  event and before the row is marked published.
- `consumer_fail_first=N` or `=CONSUMER:N`: a JetStream consumer (every one, or the durable
  consumer named CONSUMER) fails the first N deliveries of each message with a transient error.
- `publish_twice` (`=new_msg_id`, the default) or `=same_msg_id`: the relay publishes each event a
  second time, with a new `Nats-Msg-Id` (the broker stores both: the consumer's dedupe must
  catch it) or with the same one (the broker's duplicate window drops it).
- `inventory_delay_ms=N`: inventory answers ReserveStock N ms late (after reserving).
- `orders_crash_before_commit`: orders SIGKILLs its process after inventory reserved the stock
  and before the order's transaction commits.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog
from nats.js.api import PubAck

from orderflow_contracts.cloudevents import NATS_MSG_ID
from orderflow_kit import log_output

FAULTS_ENV = "ORDERFLOW_FAULTS"
FAULTS_FILE_ENV = "ORDERFLOW_FAULTS_FILE"

log = structlog.get_logger()


class Fault(StrEnum):
    RELAY_CRASH_AFTER_PUBLISH = "relay_crash_after_publish"
    CONSUMER_FAIL_FIRST = "consumer_fail_first"
    PUBLISH_TWICE = "publish_twice"
    INVENTORY_DELAY_MS = "inventory_delay_ms"
    ORDERS_CRASH_BEFORE_COMMIT = "orders_crash_before_commit"


# What each flag does and the values it takes, for people choosing one (GET /v1/admin/faults).
FLAG_HELP: Mapping[Fault, tuple[str, str]] = {
    Fault.RELAY_CRASH_AFTER_PUBLISH: (
        "The outbox relay SIGKILLs its process after the broker acked an event, before the row is marked published.",
        "on or off",
    ),
    Fault.CONSUMER_FAIL_FIRST: (
        "JetStream consumers fail the first N deliveries of every message with a transient error.",
        "N, or CONSUMER:N for the durable consumer CONSUMER alone; 0 is off",
    ),
    Fault.PUBLISH_TWICE: (
        "The outbox relay publishes every event a second time, with a new or the same Nats-Msg-Id.",
        "new_msg_id (the default), same_msg_id or off",
    ),
    Fault.INVENTORY_DELAY_MS: (
        "Inventory reserves the stock, then holds its answer to ReserveStock back N ms.",
        "N, a whole number of milliseconds; 0 is off",
    ),
    Fault.ORDERS_CRASH_BEFORE_COMMIT: (
        "Orders SIGKILLs its process after inventory reserved the stock, before the order commits.",
        "on or off",
    ),
}


class SecondPublish(StrEnum):
    """How `publish_twice` sends its second copy."""

    # A new Nats-Msg-Id, the same ce-id: the stream stores both copies; consumers must dedupe.
    NEW_MSG_ID = "new_msg_id"
    # The same Nats-Msg-Id: the broker drops the copy within its duplicate window (PubAck duplicate=True).
    SAME_MSG_ID = "same_msg_id"


@dataclass(frozen=True)
class FailFirst:
    """`consumer_fail_first`: fail deliveries 1..attempts of each message, for `consumer` or (None) all."""

    attempts: int
    consumer: str | None = None

    def applies(self, consumer: str, delivery: int) -> bool:
        return delivery <= self.attempts and self.consumer in (None, consumer)

    def __str__(self) -> str:
        return f"{self.consumer}:{self.attempts}" if self.consumer else str(self.attempts)


@dataclass(frozen=True)
class FaultFlags:
    """The faults in force; field names are the flag names."""

    relay_crash_after_publish: bool = False
    consumer_fail_first: FailFirst | None = None
    publish_twice: SecondPublish | None = None
    inventory_delay_ms: int = 0
    orders_crash_before_commit: bool = False

    def is_on(self, fault: Fault) -> bool:
        return bool(getattr(self, fault.value))

    def describe(self) -> dict[str, str]:
        """The flags that are on, for a log line."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: str(value) for name, value in values.items() if value}


NO_FAULTS = FaultFlags()
# Flag name -> its parsed value, as given by one source (the environment or the file).
_Entries = dict[str, Any]


class FaultSpecError(ValueError):
    """A fault spec names an unknown flag or gives a flag a value it cannot take."""


class FlagError(FaultSpecError):
    """The flag `name` is unknown or cannot take the value it was given."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def parse(spec: str) -> FaultFlags:
    """Parse `name[=value]` entries separated by commas or new lines (`#` starts a comment)."""
    return replace(NO_FAULTS, **_entries(spec))


def current() -> FaultFlags:
    """The faults in force now: ORDERFLOW_FAULTS, overridden flag by flag by ORDERFLOW_FAULTS_FILE,
    overridden in turn by the bucket's flags (the last spec `use_bucket_spec` was given)."""
    spec = os.environ.get(FAULTS_ENV, "")
    path = os.environ.get(FAULTS_FILE_ENV, "")
    if not spec and not path and not _bucket_entries:
        return NO_FAULTS
    flags = replace(NO_FAULTS, **{**_env_entries(spec), **_FILE.entries(path), **_bucket_entries})
    _announce(flags)
    return flags


def use_bucket_spec(spec: str, *, source: str) -> None:
    """Put the bucket's flags (a spec, empty for none) in force, and log the change at once.
    One that does not parse puts none in force: never half a list."""
    global _bucket_entries
    _bucket_entries = _parsed_or_nothing(spec, source=source)
    _announce(current())  # current() alone says nothing when no source sets a flag any more


def canonical(values: Mapping[str, str]) -> dict[str, str]:
    """Check flag by flag, and write each value the one way a spec does (`=on`, `=loyalty:2`).
    Raises FlagError naming the first flag that is unknown or whose value it cannot take."""
    written = {}
    for name, value in values.items():
        try:
            if not _FLAG_NAME.fullmatch(name):
                raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(Fault)}")
            written[name] = _written(name, _value(name, value.strip()))
        except FaultSpecError as error:
            raise FlagError(name, str(error)) from None
    return written


def spec_of(values: Mapping[str, str]) -> str:
    """A spec (one `name=value` a line) that parses back to exactly `canonical(values)`."""
    return "".join(f"{name}={value}\n" for name, value in canonical(values).items())


def flag_values(text: str) -> dict[str, str]:
    """A spec's flags as `canonical` writes them; FaultSpecError when it does not parse."""
    return {name: _written(name, value) for name, value in _entries(text).items()}


def crash_point(fault: Fault, **context: object) -> None:
    """The injection point of a crash fault: SIGKILL this process when `fault` is on.

    SIGKILL, not an exception or a clean exit: nothing runs after it (no `finally`, no rollback
    by us, no goodbye to the broker), exactly like a power cut or the OOM killer."""
    if not current().is_on(fault):
        return
    _fired(fault, effect="SIGKILL", **context)
    log_output.flush_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class InjectedFailure(ConnectionError):
    """What an injection point raises to fail on purpose (consumer_fail_first). It plays a
    dependency lost for a moment (a ConnectionError), so the failure classification treats it
    as transient: retried with backoff, logged without a traceback."""


def should_fail_attempt(consumer: str, delivery: int, **context: object) -> bool:
    """`consumer_fail_first`: whether the durable consumer `consumer` must fail this delivery
    (1 for the first) of a message, as a transient error would (raise InjectedFailure), to
    show retries with backoff and, with N >= max_deliver, dead-lettering as exhausted."""
    fail_first = current().consumer_fail_first
    if fail_first is None or not fail_first.applies(consumer, delivery):
        return False
    _fired(Fault.CONSUMER_FAIL_FIRST, consumer=consumer, delivery=delivery, **context)
    return True


async def publish_twice(
    publish: Callable[[dict[str, str]], Awaitable[PubAck]], headers: Mapping[str, str], **context: object
) -> None:
    """`publish_twice`: call `publish(headers)` a second time for an event just published with
    `headers`, with a new or the same `Nats-Msg-Id`, and log what the broker answered."""
    mode = current().publish_twice
    if mode is None:
        return
    again = dict(headers)
    if mode is SecondPublish.NEW_MSG_ID:
        again[NATS_MSG_ID] = f"twice.{headers[NATS_MSG_ID]}"
    ack = await publish(again)
    _fired(
        Fault.PUBLISH_TWICE,
        mode=mode.value,
        msg_id=again[NATS_MSG_ID],
        stream_seq=ack.seq,
        duplicate=bool(ack.duplicate),
        **context,
    )


async def inventory_delay(**context: object) -> None:
    """`inventory_delay_ms`: hold inventory's answer back that long."""
    delay_ms = current().inventory_delay_ms
    if not delay_ms:
        return
    _fired(Fault.INVENTORY_DELAY_MS, delay_ms=delay_ms, **context)
    await asyncio.sleep(delay_ms / 1000)


def _fired(fault: Fault, **details: object) -> None:
    log.warning("fault injected", fault=fault.value, **details)


# Parsing.

_ON = {"", "1", "true", "on", "yes"}
_OFF = {"0", "false", "off", "no"}
_FLAG_NAME = re.compile(r"[a-z_]+")
# A durable consumer's name in `consumer_fail_first=CONSUMER:N`: one subject token, nothing the
# spec's syntax (`,` `#` `=` new lines) would split.
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _entries(spec: str) -> _Entries:
    entries: _Entries = {}
    for line in spec.splitlines():
        for item in line.split("#", 1)[0].split(","):
            if item.strip():
                name, _, value = (part.strip() for part in item.partition("="))
                entries[name] = _value(name, value)
    return entries


def _value(name: str, value: str) -> object:
    keyword = value.lower()
    match name:
        case Fault.RELAY_CRASH_AFTER_PUBLISH | Fault.ORDERS_CRASH_BEFORE_COMMIT:
            if keyword in _ON | _OFF:
                return keyword in _ON
            raise FaultSpecError(f"{name} takes no value, or on/off (got {value!r})")
        case Fault.PUBLISH_TWICE:
            if keyword in _OFF:
                return None
            if keyword in ("", *SecondPublish):
                return SecondPublish(keyword or SecondPublish.NEW_MSG_ID)
            raise FaultSpecError(f"publish_twice takes no value, new_msg_id, same_msg_id or off (got {value!r})")
        case Fault.INVENTORY_DELAY_MS:
            return _count(name, value)
        case Fault.CONSUMER_FAIL_FIRST:
            consumer, colon, attempts = value.rpartition(":")
            if colon and not _CONSUMER_NAME.fullmatch(consumer):
                raise FaultSpecError(f"consumer_fail_first names no consumer it could be (got {consumer!r})")
            count = _count(name, attempts)
            return FailFirst(count, consumer or None) if count else None
    known = ", ".join(Fault)
    raise FaultSpecError(f"unknown fault {name!r}; known: {known}")


def _count(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise FaultSpecError(f"{name} takes a whole number from 0 to 999999999 (got {value!r})")
    return int(value)


def _written(name: str, value: object) -> str:
    """A parsed value as a spec writes it: what `_value(name, ...)` parses back to `value`."""
    match value:
        case bool():
            return "on" if value else "off"
        case None:
            return "0" if name == Fault.CONSUMER_FAIL_FIRST else "off"
        case _:
            return str(value)


# Sources: the environment (parsed once per distinct value) and the file (parsed once per version).


@lru_cache(maxsize=8)
def _env_entries(spec: str) -> _Entries:
    return _parsed_or_nothing(spec, source=FAULTS_ENV)


def _parsed_or_nothing(spec: str, *, source: str) -> _Entries:
    try:
        return _entries(spec)
    except FaultSpecError as error:
        log.error("fault spec ignored", source=source, error=str(error))
        return {}


class _FaultsFile:
    """The file's flags, read again only when its identity, size or mtime changes."""

    def __init__(self) -> None:
        self._version: tuple[str, int, int, int] | None = None
        self._entries: _Entries = {}

    def entries(self, path: str) -> _Entries:
        if not path:
            return {}
        try:
            stat = os.stat(path)
        except OSError:
            self._version, self._entries = None, {}
            return {}  # no file, no faults: deleting it heals everything it broke
        version = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self._version:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                log.error("fault file unreadable", path=path, error=str(error))
                text = ""
            self._entries = _parsed_or_nothing(text, source=path)
            self._version = version
        return self._entries


_FILE = _FaultsFile()
# The bucket's flags, set by its watcher (orderflow_kit.fault_bucket) whenever they change.
_bucket_entries: _Entries = {}
_last_announced: FaultFlags = NO_FAULTS


def _announce(flags: FaultFlags) -> None:
    """Log once whenever the set of faults in force changes, so the log says when they began and ended."""
    global _last_announced
    if flags != _last_announced:
        _last_announced = flags
        log.warning("fault flags changed", faults=flags.describe())
