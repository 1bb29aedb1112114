"""NATS connections that survive a broker restart, and the JetStream streams orderflow uses."""

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from orderflow_contracts.streams import DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECTS, ORDERS_STREAM, ORDERS_SUBJECTS

log = structlog.get_logger()
DUPLICATE_WINDOW_SECONDS = 120.0

STREAMS = (
    StreamConfig(
        name=ORDERS_STREAM,
        subjects=ORDERS_SUBJECTS,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
    StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=DEAD_LETTER_SUBJECTS,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    ),
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


async def ensure_streams(js: JetStreamContext) -> None:
    """Create orderflow's streams, or bring an existing one to the configuration above."""
    for config in STREAMS:
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
