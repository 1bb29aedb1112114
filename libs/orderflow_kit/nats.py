"""NATS connections that survive a broker restart, and the JetStream streams orderflow uses."""

import asyncio

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from orderflow_contracts.streams import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, ORDERS_STREAM, ORDERS_SUBJECTS

log = structlog.get_logger()
DUPLICATE_WINDOW_SECONDS = 120.0
_DAY = 24 * 3600.0
# How long each stream keeps a message, acked or not (limits retention); then it is gone for good.
ORDERS_MAX_AGE_SECONDS = 7 * _DAY
# An operator has this long to replay a dead letter.
DEAD_LETTERS_MAX_AGE_SECONDS = 14 * _DAY
# The longest a copy of an ORDERS event can still reach a consumer after the consumer first
# processed it: the message lives in ORDERS (redeliveries, loyalty down, a consumer recreated
# with deliver policy "all"), may then be dead-lettered and replayed as late as DEAD_LETTERS
# keeps it, and the replayed copy lives in ORDERS again. A consumer's dedupe rows must be kept
# longer than this (docs/operations.md, "Housekeeping").
REDELIVERY_HORIZON_SECONDS = ORDERS_MAX_AGE_SECONDS + DEAD_LETTERS_MAX_AGE_SECONDS + ORDERS_MAX_AGE_SECONDS

# The largest message (headers included) ORDERS takes: the broker's default max_payload (1 MiB)
# less room for the headers a dead letter adds (a few KB). So any message a consumer receives can
# be dead-lettered; one the broker could not store as a dead letter (it closes the connection of
# whoever publishes it) is refused to its producer instead ("message size exceeds maximum allowed").
ORDERS_MAX_MESSAGE_BYTES = 1024 * 1024 - 16 * 1024


def stream_configs(duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS) -> tuple[StreamConfig, ...]:
    """orderflow's streams; within `duplicate_window_seconds` the broker drops a second message
    with the same Nats-Msg-Id (after that, only the consumers' dedupe tables catch a copy)."""

    def kept(name: str, subjects: list[str], max_age: float, max_msg_size: int = -1) -> StreamConfig:
        """A stream on file that keeps each message, acked or not, for `max_age` (-1: the broker's
        own size limit)."""
        return StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=max_age,
            max_msg_size=max_msg_size,
            duplicate_window=duplicate_window_seconds,
        )

    return (
        kept(ORDERS_STREAM, ORDERS_SUBJECTS, ORDERS_MAX_AGE_SECONDS, max_msg_size=ORDERS_MAX_MESSAGE_BYTES),
        kept(DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, DEAD_LETTERS_MAX_AGE_SECONDS),
    )


async def connect(url: str, name: str) -> Client:
    """Connect once; afterwards reconnect forever (nats-py gives up after ~2 minutes by default)."""

    async def disconnected() -> None:
        log.warning("nats disconnected")

    async def reconnected() -> None:
        log.info("nats reconnected")

    async def error(exc: Exception) -> None:
        # Every failed reconnect attempt lands here; `disconnected` already said what matters.
        log.debug("nats error", error=str(exc))

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )


async def ensure_streams(js: JetStreamContext, duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS) -> None:
    """Create orderflow's streams, or bring an existing one to the configuration above."""
    for config in stream_configs(duplicate_window_seconds):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except BadRequestError:
                pass  # another process created it first
        await js.update_stream(config)


def raise_if_cancelled() -> None:
    """nats-py swallows a CancelledError in places (its flush after a request, for one), so a stop
    while a NATS call is under way can go unnoticed and a loop around such calls would run on,
    holding the shutdown. The task still counts the cancellation request: honour it. Call it after
    the NATS calls of any loop that runs until cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
