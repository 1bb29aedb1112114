"""Dead letters: messages a consumer gave up on, parked in the DEAD_LETTERS stream with the reason,
and put back on their original subject when someone has fixed the cause.

A dead letter of consumer C for a message on subject S is stored on `dlq.C.S` with the original
body and ALL the original headers, plus `dlq-*` headers saying why and where from. The broker's
own `Nats-*` headers (Nats-Msg-Id, Nats-Expected-Stream, ...) are kept renamed to
`dlq-original-Nats-*`, so that they do not act again on the dead-letter publish. A header whose
name nats-py would refuse to publish (it receives any name, but publishes only RFC 7230 tokens)
is kept, with its value, in one `unpublishable-headers` header (a JSON object), so that any
message can be dead-lettered and replayed. Its
`Nats-Msg-Id` is derived from (consumer, original stream, original sequence), so when a consumer
crashes between storing the dead letter and acking the original, the redelivered message's
dead letter is dropped by the broker's duplicate window instead of being stored twice.

Replay publishes the original headers (without the `dlq-*` and `Nats-*` ones) and body, or a replacement body,
with a NEW `Nats-Msg-Id` (the original one may still be inside the broker's duplicate window and
would be silently dropped) but the SAME `ce-id`, so the consumer's dedupe table still recognises
an event it has already processed. Then it deletes the dead letter. With tracing on, the replayed
message carries the replay's own trace context, and the replay's span links to the original one.

Operators work on them one at a time (show, replay, delete) or in bulk, all or one consumer's
(count, replay, purge). Bulk operations take the stream's last sequence when they start and never
go past it: a message that fails again while `replay_dead_letters` runs is dead-lettered under a
new, higher sequence, and is not replayed a second time by the same run."""

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind

from orderflow_contracts.cloudevents import NATS_MSG_ID, TRACEPARENT
from orderflow_contracts.streams import DEAD_LETTER_STREAM, dead_letter_subject
from orderflow_kit import tracing, untrusted_json

HEADER_PREFIX = "dlq-"
REASON = "dlq-reason"
ERROR = "dlq-error"
ERROR_CLASS = "dlq-error-class"
CONSUMER = "dlq-consumer"
ORIGINAL_STREAM = "dlq-stream"
ORIGINAL_SEQUENCE = "dlq-stream-sequence"
ORIGINAL_SUBJECT = "dlq-subject"
ORIGINAL_BROKER_HEADER_PREFIX = "dlq-original-"
DELIVERIES = "dlq-deliveries"
DEAD_LETTERED_AT = "dlq-at"
FIRST_FAILURE_AT = "dlq-first-failure-at"

# The original headers whose names nats-py will not publish (not RFC 7230 tokens, like `x(y)`),
# as a JSON object {name: value}. Not a `dlq-*` header: a replay carries it along.
UNPUBLISHABLE_HEADERS = "unpublishable-headers"
# The header names nats-py publishes (its own check, `nats.aio.client._HEADER_KEY_RE`).
_publishable_name = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

MAX_ERROR_CHARS = 1000
# First failures remembered per consumer (see FirstFailures); far more than ever fail at once.
REMEMBERED_FAILURES = 10_000
ALL_DEAD_LETTERS = "dlq.>"
# A consumer's name as it appears in its dead letters' subjects: one subject token, no wildcard.
CONSUMER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_consumer_name = re.compile(CONSUMER_NAME_PATTERN)


class Reason(StrEnum):
    PERMANENT = "permanent"  # the message itself is bad; it was never retried
    EXHAUSTED = "exhausted"  # every delivery up to max_deliver failed


class DeadLetterError(Exception):
    """An operator's request that cannot be done; the message says why."""


class DeadLetterNotFound(DeadLetterError):
    def __init__(self, sequence: int) -> None:
        super().__init__(f"no dead letter with sequence {sequence} in stream {DEAD_LETTER_STREAM}")
        self.sequence = sequence


class NotReplayable(DeadLetterError):
    """The message in DEAD_LETTERS lacks the headers that say where it came from."""


def dead_letter_filter(consumer: str | None = None) -> str:
    """The subject filter for one consumer's dead letters (`dlq.<consumer>.>`), or everyone's."""
    if consumer is None:
        return ALL_DEAD_LETTERS
    if not _consumer_name.fullmatch(consumer):
        raise DeadLetterError(f"{consumer!r} is not a consumer name (letters, digits, '-' and '_')")
    return f"dlq.{consumer}.>"


class _Header:
    """One of a dead letter's headers, read as an attribute: None when the message lacks it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, letter: "DeadLetter", owner: type["DeadLetter"]) -> str | None:
        return letter.headers.get(self.name)


@dataclass(frozen=True)
class DeadLetter:
    sequence: int  # in DEAD_LETTERS: the id to show or replay it by
    subject: str
    headers: dict[str, str]
    body: bytes
    stored_at: datetime | None = None

    reason = _Header(REASON)
    error = _Header(ERROR)
    error_class = _Header(ERROR_CLASS)
    event_id = _Header("ce-id")
    consumer = _Header(CONSUMER)
    original_subject = _Header(ORIGINAL_SUBJECT)
    original_stream = _Header(ORIGINAL_STREAM)
    original_sequence = _Header(ORIGINAL_SEQUENCE)
    deliveries = _Header(DELIVERIES)
    first_failure_at = _Header(FIRST_FAILURE_AT)
    dead_lettered_at = _Header(DEAD_LETTERED_AT)
    # The W3C trace context of the request that produced the event: where to look for its story.
    traceparent = _Header(TRACEPARENT)

    def original_headers(self) -> dict[str, str]:
        """The message's own headers: without the `dlq-*` ones and the broker's `Nats-*` ones."""
        return {
            name: value
            for name, value in self.headers.items()
            if not name.startswith(HEADER_PREFIX) and not _is_broker_header(name)
        }

    def summary(self) -> dict[str, str | int | None]:
        """What an operator lists it by (`orderflow dlq list --json`, the gateway's admin endpoints)."""
        return {
            "sequence": self.sequence,
            "subject": self.subject,
            "consumer": self.consumer,
            "original_subject": self.original_subject,
            "original_sequence": self.original_sequence,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "ce_id": self.event_id,
            "traceparent": self.traceparent,
            "first_failure_at": self.first_failure_at,
            "dead_lettered_at": self.dead_lettered_at,
            "error_class": self.error_class,
            "error": self.error,
        }

    def details(self) -> dict[str, Any]:
        """Everything about it (`orderflow dlq show`): the summary, when it was stored, every
        header, and the body (see `readable_body`)."""
        return {
            **self.summary(),
            "stored_at": self.stored_at.isoformat() if self.stored_at else None,
            "headers": self.headers,
            **readable_body(self.body),
        }


def readable_body(body: bytes) -> dict[str, Any]:
    """A body as JSON shows it: `body` when it is JSON, else `body_text` when it is UTF-8 text,
    else `body_base64`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}
    try:
        return {"body": untrusted_json.loads(text)}
    except ValueError:
        return {"body_text": text}


@dataclass(frozen=True)
class Failed:
    """Why a consumer gives up on a message: for the `dlq-*` headers."""

    reason: Reason
    error: str  # one line, see failures.describe
    error_class: str  # see failures.error_class
    first_failure_at: datetime


class FirstFailures:
    """When each failing message (by stream sequence) first failed here, kept across its
    redeliveries so that its dead letter can say how long it has been failing (FIRST_FAILURE_AT).

    Only this process remembers: when another replica, or this process before a restart, saw the
    first failure, the time the message was stored in the stream stands in for it (never later
    than the real first failure). Bounded: the oldest entries go first."""

    def __init__(self, capacity: int = REMEMBERED_FAILURES) -> None:
        self._first: dict[int, datetime] = {}
        self._capacity = capacity

    def failed(self, message: Msg) -> datetime:
        """Note a failure of `message` and return when it first failed."""
        sequence = message.metadata.sequence.stream
        first = self._first.get(sequence)
        if first is None:
            first = datetime.now(UTC) if message.metadata.num_delivered <= 1 else _stored_at(message)
            self._first[sequence] = first
            if len(self._first) > self._capacity:
                del self._first[next(iter(self._first))]
        return first

    def forget(self, message: Msg) -> None:
        self._first.pop(message.metadata.sequence.stream, None)


def dead_letter_headers(message: Msg, *, consumer: str, failed: Failed, now: datetime | None = None) -> dict[str, str]:
    """The original headers, the `dlq-*` ones, and a Nats-Msg-Id unique to this message and consumer."""
    metadata = message.metadata
    headers = publishable_headers(
        {
            (ORIGINAL_BROKER_HEADER_PREFIX + name if _is_broker_header(name) else name): value
            for name, value in (message.headers or {}).items()
        }
    )
    headers.update(
        {
            REASON: failed.reason.value,
            ERROR: _header_safe(failed.error),
            ERROR_CLASS: _header_safe(failed.error_class),
            CONSUMER: consumer,
            ORIGINAL_STREAM: metadata.stream,
            ORIGINAL_SEQUENCE: str(metadata.sequence.stream),
            ORIGINAL_SUBJECT: message.subject,
            DELIVERIES: str(metadata.num_delivered),
            FIRST_FAILURE_AT: failed.first_failure_at.isoformat(),
            DEAD_LETTERED_AT: (now or datetime.now(UTC)).isoformat(),
            NATS_MSG_ID: f"dlq.{consumer}.{metadata.stream}.{metadata.sequence.stream}",
        }
    )
    return headers


def publishable_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` as nats-py will publish them: those whose names it refuses go, with their values,
    into the one `unpublishable-headers` header (merged with the one `headers` may already carry,
    from an earlier dead letter of the same message). Names are stripped, as nats-py does."""
    kept: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, value in headers.items():
        stripped = name.strip()
        if not stripped:
            continue
        if _publishable_name.fullmatch(stripped):
            kept[stripped] = value
        else:
            refused[stripped] = value
    if not refused:
        return kept
    earlier = kept.pop(UNPUBLISHABLE_HEADERS, None)
    if earlier is not None:
        refused = {**_unpublishable(earlier), **refused}
    # ensure_ascii: one line of ASCII, whatever the names and values hold.
    kept[UNPUBLISHABLE_HEADERS] = json.dumps(refused, ensure_ascii=True, separators=(",", ":"))
    return kept


def _unpublishable(value: str) -> dict[str, str]:
    """An `unpublishable-headers` value read back; one that is not ours is kept under its own name."""
    try:
        earlier = untrusted_json.loads(value)
    except ValueError:
        earlier = None
    if isinstance(earlier, dict) and all(isinstance(item, str) for item in earlier.values()):
        return {str(name): item for name, item in earlier.items()}
    return {UNPUBLISHABLE_HEADERS: value}


async def publish_dead_letter(js: JetStreamContext, message: Msg, *, consumer: str, failed: Failed) -> PubAck:
    """Store a JetStream message in DEAD_LETTERS. The caller acks the original only after this returns.
    The publish waits for the broker's ack up to the JetStreamContext's timeout.

    Traced as a send span in the current context (the message's process span); the dead letter
    keeps the original traceparent, the order's creation context, for its replay to link to."""
    subject = dead_letter_subject(consumer, message.subject)
    headers = dead_letter_headers(message, consumer=consumer, failed=failed)
    with tracing.span(
        f"send {subject}",
        kind=SpanKind.PRODUCER,
        attributes=tracing.messaging_attributes(
            "send",
            subject,
            message_id=headers.get("ce-id"),
            operation_name="dead_letter",
            reason=failed.reason.value,
            error_class=failed.error_class,
        ),
    ):
        return await js.publish(subject, message.data, stream=DEAD_LETTER_STREAM, headers=headers)


async def list_dead_letters(
    js: JetStreamContext, *, subject: str = ALL_DEAD_LETTERS, after: int = 0, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters on `subject` (a filter like `dlq.loyalty.>`), oldest first, sequence > `after`."""
    letters: list[DeadLetter] = []
    sequence = after + 1
    while len(letters) < limit:
        try:
            raw = await js.get_msg(DEAD_LETTER_STREAM, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            break
        letter = _dead_letter(raw)
        letters.append(letter)
        sequence = letter.sequence + 1
    return letters


@dataclass(frozen=True)
class DeadLetterPage:
    counts: dict[str, int]  # how many each subject on the filter holds (all pages)
    letters: list[DeadLetter]
    next_after: int | None  # pass as `after` for the next page; None on the last one

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def page_of_dead_letters(
    js: JetStreamContext, *, subject: str = ALL_DEAD_LETTERS, after: int = 0, limit: int = 100
) -> DeadLetterPage:
    """One page of `list_dead_letters`, with how many there are in all and where the next page starts."""
    counts = await count_dead_letters(js, subject=subject)
    letters = await list_dead_letters(js, subject=subject, after=after, limit=limit + 1)
    page = letters[:limit]
    return DeadLetterPage(counts, page, page[-1].sequence if len(letters) > limit else None)


async def get_dead_letter(js: JetStreamContext, sequence: int) -> DeadLetter:
    try:
        raw = await js.get_msg(DEAD_LETTER_STREAM, seq=sequence)
    except NotFoundError as error:
        raise DeadLetterNotFound(sequence) from error
    return _dead_letter(raw)


def delivered_dead_letter(message: Msg) -> DeadLetter:
    """A dead letter as a consumer of DEAD_LETTERS receives it (a live feed, say)."""
    metadata = message.metadata
    return DeadLetter(
        metadata.sequence.stream, message.subject, dict(message.headers or {}), message.data, metadata.timestamp
    )


@dataclass(frozen=True)
class Replayed:
    dead_letter: DeadLetter
    subject: str
    stream: str
    sequence: int  # in the original stream
    msg_id: str


async def replay_dead_letter(js: JetStreamContext, sequence: int, *, payload: bytes | None = None) -> Replayed:
    """Publish a dead letter back to its original subject (with `payload` as the body, to replay a
    fixed message), then delete it from DEAD_LETTERS.

    The new Nats-Msg-Id is derived from the dead letter (its sequence, and where it came from):
    running the same replay again after a crash between the publish and the delete is dropped by
    the broker's duplicate window."""
    return await _replay(js, await get_dead_letter(js, sequence), payload)


@dataclass(frozen=True)
class BulkReplay:
    replayed: list[Replayed]
    # Dead letters that could not be replayed (NotReplayable), with why; they stay in DEAD_LETTERS.
    skipped: list[tuple[int, str]]


async def replay_dead_letters(js: JetStreamContext, *, subject: str = ALL_DEAD_LETTERS) -> BulkReplay:
    """Replay every dead letter on `subject` (a filter like `dlq.loyalty.>`) stored when this starts,
    oldest first, each as `replay_dead_letter` does."""
    last = await _last_sequence(js)
    replayed: list[Replayed] = []
    skipped: list[tuple[int, str]] = []
    after = 0
    while page := [
        letter for letter in await list_dead_letters(js, subject=subject, after=after) if letter.sequence <= last
    ]:
        for letter in page:
            try:
                replayed.append(await _replay(js, letter, None))
            except NotReplayable as error:
                skipped.append((letter.sequence, str(error)))
        after = page[-1].sequence
    return BulkReplay(replayed, skipped)


async def count_dead_letters(js: JetStreamContext, *, subject: str = ALL_DEAD_LETTERS) -> dict[str, int]:
    """How many dead letters each subject (`dlq.<consumer>.<original subject>`) on `subject` holds."""
    info = await js.stream_info(DEAD_LETTER_STREAM, subjects_filter=subject)
    return dict(sorted((info.state.subjects or {}).items()))


async def purge_dead_letters(js: JetStreamContext, *, subject: str = ALL_DEAD_LETTERS) -> int:
    """Delete every dead letter on `subject` stored when this starts; returns how many there were."""
    info = await js.stream_info(DEAD_LETTER_STREAM, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    if count:
        # Up to, not including, `seq`: what is dead-lettered from now on stays.
        await js.purge_stream(DEAD_LETTER_STREAM, subject=subject, seq=info.state.last_seq + 1)
    return count


async def delete_dead_letter(js: JetStreamContext, sequence: int) -> DeadLetter:
    """Delete one dead letter for good; returns what it was."""
    letter = await get_dead_letter(js, sequence)
    try:
        await js.delete_msg(DEAD_LETTER_STREAM, sequence)
    except NotFoundError as error:  # deleted meanwhile, by a replay or another operator
        raise DeadLetterNotFound(sequence) from error
    return letter


async def _replay(js: JetStreamContext, letter: DeadLetter, payload: bytes | None) -> Replayed:
    subject, stream = letter.original_subject, letter.original_stream
    if not subject or not stream:
        raise NotReplayable(f"dead letter {letter.sequence} has no {ORIGINAL_SUBJECT} or {ORIGINAL_STREAM} header")
    msg_id = f"replay.{letter.sequence}.{stream}.{letter.original_sequence}"
    # Publishable whatever the dead letter holds (one stored before `publishable_headers` existed, say).
    headers = {**publishable_headers(letter.original_headers()), NATS_MSG_ID: msg_id}
    # The replay is a new creation of the message, by whoever replays it (its context travels
    # with it); it links to the original trace, where the order's story began.
    with tracing.span(
        f"send {subject}",
        kind=SpanKind.PRODUCER,
        links=tracing.links_to([letter.headers]),
        attributes=tracing.messaging_attributes(
            "send",
            subject,
            message_id=letter.event_id,
            operation_name="replay",
            dead_letter_sequence=letter.sequence,
            replayed_payload=payload is not None,
        ),
    ):
        tracing.inject(headers)
        ack = await js.publish(subject, letter.body if payload is None else payload, stream=stream, headers=headers)
    if ack.duplicate and payload is not None:
        # The broker kept an earlier replay of this dead letter, not this payload: say so.
        raise NotReplayable(f"dead letter {letter.sequence} was already replayed (stream sequence {ack.seq})")
    with contextlib.suppress(NotFoundError):  # a concurrent replay of the same dead letter deleted it
        await js.delete_msg(DEAD_LETTER_STREAM, letter.sequence)
    return Replayed(letter, subject, ack.stream, ack.seq, msg_id)


async def _last_sequence(js: JetStreamContext) -> int:
    info = await js.stream_info(DEAD_LETTER_STREAM)
    return info.state.last_seq


def _dead_letter(raw: RawStreamMsg) -> DeadLetter:
    if raw.seq is None or raw.subject is None:
        raise ValueError("the server returned a stream message without sequence or subject")
    # nats-py's own parsing of stored headers turns non-ASCII values into email.header.Header
    # objects, so read the raw header block (base64 of "NATS/1.0\r\nName: value\r\n...").
    headers: dict[str, str] = {}
    if raw.hdrs:
        block = base64.b64decode(raw.hdrs).decode("utf-8", "replace")
        for line in block.split("\r\n")[1:]:
            name, colon, value = line.partition(":")
            if colon and name.strip():
                headers[name.strip()] = value.strip()
    return DeadLetter(raw.seq, raw.subject, headers, raw.data or b"", raw.time)


def _stored_at(message: Msg) -> datetime:
    """When the broker stored the message (the ack subject carries it)."""
    return message.metadata.timestamp.astimezone(UTC)


def _is_broker_header(name: str) -> bool:
    return name.lower().startswith("nats-")


def _header_safe(text: str) -> str:
    """NATS header values are one line of ASCII; keep an error readable and bounded."""
    one_line = " ".join(text.split())
    ascii_only = one_line.encode("ascii", "backslashreplace").decode("ascii")
    if len(ascii_only) <= MAX_ERROR_CHARS:
        return ascii_only
    return ascii_only[: MAX_ERROR_CHARS - 3] + "..."
