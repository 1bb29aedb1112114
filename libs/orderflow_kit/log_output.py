"""Where a service's log lines go: stderr, in one write per FLUSH_EVERY_SECONDS, not one per line.

A service logs a line per request and per event. Written one by one, as structlog's BytesLogger
does (and the pipeline runs services with PYTHONUNBUFFERED), each line is a system call on the
pipe to whoever collects the logs, and wakes it: with py-spy under load, a tenth of inventory's
CPU and a twentieth of orders'. Writing each event-loop turn's lines together barely helped
(under load a turn logs about one line). So a line is kept, and the lines kept leave together,
in the order they were logged, FLUSH_EVERY_SECONDS after the first of them: at most 50 writes a
second under any load, and a line out within 20 ms.

With no loop running in the thread (start-up, shutdown, a worker thread) a line is written at
once, and whatever is kept is written when the process exits or kills itself
(orderflow_kit.faults.crash_point calls `flush_all`). A SIGKILL from outside loses at most the
last 20 ms of lines. The libraries' lines (the standard logging module: warnings and errors) are
written at once, so one may come out ahead of a service line logged just before it."""

import asyncio
import atexit
import sys
import threading
import weakref
from typing import BinaryIO

# How long a line may wait for the ones logged after it.
FLUSH_EVERY_SECONDS = 0.02

_LOGGERS: "weakref.WeakSet[BufferedLogger]" = weakref.WeakSet()


class BufferedLogger:
    """A structlog logger for rendered (bytes) lines, written FLUSH_EVERY_SECONDS apart to `file`,
    a buffered binary file (its write writes everything it is given)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        # The loop a flush is scheduled on: a loop that closed before running it schedules none.
        self._flush_scheduled_on: asyncio.AbstractEventLoop | None = None
        _LOGGERS.add(self)

    def msg(self, line: bytes) -> None:
        with self._lock:
            self._lines.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_scheduled_on is not loop:
            self._flush_scheduled_on = loop
            loop.call_later(FLUSH_EVERY_SECONDS, self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_scheduled_on = None
            if self._lines:
                self._file.write(b"\n".join(self._lines) + b"\n")
                self._file.flush()
                self._lines.clear()

    # structlog calls the method named like the level.
    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class BufferedLoggerFactory:
    """structlog's logger_factory: every logger of the process shares one."""

    def __init__(self, file: BinaryIO) -> None:
        self._logger = BufferedLogger(file)

    def __call__(self, *_args: object) -> BufferedLogger:
        return self._logger


def stderr() -> BinaryIO:
    """Standard error as a buffered binary file, even when the process runs unbuffered."""
    return open(sys.stderr.fileno(), "wb", closefd=False)


def flush_all() -> None:
    """Write every line still kept, now."""
    for logger in list(_LOGGERS):
        logger.flush()


atexit.register(flush_all)
