"""Log lines leave once per event-loop turn, in order; outside a loop, at once."""

import asyncio
import io

import structlog

from orderflow_kit import log_output
from orderflow_kit.log_output import TurnFlushedLogger, TurnFlushedLoggerFactory


class RecordedWrites(io.BytesIO):
    """A file that remembers each write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().write(data)


async def test_the_lines_of_one_turn_leave_in_one_write_within_that_turn() -> None:
    file = RecordedWrites()
    logger = TurnFlushedLogger(file)
    logger.info(b'{"event":"first"}')
    logger.warning(b'{"event":"second"}')
    assert file.writes == []
    await asyncio.sleep(0)
    assert file.writes == [b'{"event":"first"}\n{"event":"second"}\n']
    logger.info(b'{"event":"third"}')
    await asyncio.sleep(0)
    assert file.writes[1:] == [b'{"event":"third"}\n']


def test_a_line_logged_with_no_loop_running_is_written_at_once() -> None:
    file = RecordedWrites()
    TurnFlushedLogger(file).info(b"alone")
    assert file.writes == [b"alone\n"]


def test_a_closed_loop_does_not_keep_the_next_loops_lines() -> None:
    file = RecordedWrites()
    logger = TurnFlushedLogger(file)

    async def log_and_leave() -> None:
        logger.info(b"last of its loop")

    asyncio.run(log_and_leave())
    asyncio.run(log_and_leave())
    assert b"".join(file.writes) == b"last of its loop\nlast of its loop\n"


async def test_flush_all_writes_what_is_kept_now() -> None:
    """What a crash fault calls before it kills the process."""
    file = RecordedWrites()
    TurnFlushedLogger(file).error(b"fault fired")
    log_output.flush_all()
    assert file.writes == [b"fault fired\n"]


async def test_structlog_renders_through_it() -> None:
    file = RecordedWrites()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer(serializer=lambda event, **_: repr(event).encode())],
        logger_factory=TurnFlushedLoggerFactory(file),
        cache_logger_on_first_use=False,
    )
    try:
        structlog.get_logger().info("order placed", order_id="o-1")
        await asyncio.sleep(0)
    finally:
        structlog.reset_defaults()
    assert file.writes == [b"{'order_id': 'o-1', 'event': 'order placed'}\n"]
