"""Log lines leave together, in order, FLUSH_EVERY_SECONDS after the first; outside a loop, at once."""

import asyncio
import io

import structlog

from orderflow_kit import log_output
from orderflow_kit.log_output import BufferedLogger, BufferedLoggerFactory
from tests.support.polling import eventually


class RecordedWrites(io.BytesIO):
    """A file that remembers each write it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().write(data)


async def written(file: RecordedWrites, count: int = 1) -> list[bytes]:
    """The file's writes once there are `count` of them."""
    return await eventually(lambda: file.writes, lambda writes: len(writes) >= count, what=f"{count} writes")


async def test_lines_logged_close_together_leave_in_one_write_in_order() -> None:
    file = RecordedWrites()
    logger = BufferedLogger(file)
    logger.info(b'{"event":"first"}')
    await asyncio.sleep(0)
    logger.warning(b'{"event":"second"}')
    assert file.writes == []
    assert await written(file) == [b'{"event":"first"}\n{"event":"second"}\n']
    logger.info(b'{"event":"third"}')
    assert (await written(file, 2))[1:] == [b'{"event":"third"}\n']


def test_a_line_logged_with_no_loop_running_is_written_at_once() -> None:
    file = RecordedWrites()
    BufferedLogger(file).info(b"alone")
    assert file.writes == [b"alone\n"]


def test_a_line_kept_by_a_loop_that_ended_goes_out_with_the_next() -> None:
    file = RecordedWrites()
    logger = BufferedLogger(file)

    async def log_and_leave() -> None:
        logger.info(b"last of its loop")

    asyncio.run(log_and_leave())
    logger.info(b"after it")
    assert b"".join(file.writes) == b"last of its loop\nafter it\n"


async def test_flush_all_writes_what_is_kept_now() -> None:
    """What a crash fault calls before it kills the process, and what runs at exit."""
    file = RecordedWrites()
    BufferedLogger(file).error(b"fault fired")
    log_output.flush_all()
    assert file.writes == [b"fault fired\n"]


async def test_structlog_renders_through_it() -> None:
    file = RecordedWrites()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer(serializer=lambda event, **_: repr(event).encode())],
        logger_factory=BufferedLoggerFactory(file),
        cache_logger_on_first_use=False,
    )
    try:
        structlog.get_logger().info("order placed", order_id="o-1")
    finally:
        structlog.reset_defaults()
    assert await written(file) == [b"{'order_id': 'o-1', 'event': 'order placed'}\n"]
