"""Where a service's log lines go: stderr, in one write per turn of the event loop.

A service logs a line per request and per event. Written one by one, as structlog's BytesLogger
does (and the pipeline runs services with PYTHONUNBUFFERED), each line is a system call on the
pipe to whoever collects the logs (with py-spy under load: a tenth of inventory's CPU, a
twentieth of orders'). Here a line is kept until the loop has run what is ready now, then the
turn's lines leave in one write, in the order they were logged. With no loop running in the
thread (start-up, shutdown, a worker thread) a line is written at once. A process that kills
itself (orderflow_kit.faults.crash_point) calls `flush_all` first, so its last lines are out.

Lines of the libraries that log through the standard logging module (warnings and errors) are
written at once, so one may come out ahead of the service's lines of the same turn."""

import asyncio
import sys
import threading
import weakref
from typing import BinaryIO

_LOGGERS: "weakref.WeakSet[TurnFlushedLogger]" = weakref.WeakSet()


class TurnFlushedLogger:
    """A structlog logger for rendered (bytes) lines, written once per event-loop turn to `file`,
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
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_scheduled_on = None
            if self._lines:
                self._file.write(b"\n".join(self._lines) + b"\n")
                self._file.flush()
                self._lines.clear()

    # structlog calls the method named like the level.
    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class TurnFlushedLoggerFactory:
    """structlog's logger_factory: every logger of the process shares one, so one write a turn."""

    def __init__(self, file: BinaryIO) -> None:
        self._logger = TurnFlushedLogger(file)

    def __call__(self, *_args: object) -> TurnFlushedLogger:
        return self._logger


def stderr() -> BinaryIO:
    """Standard error as a buffered binary file, even when the process runs unbuffered."""
    return open(sys.stderr.fileno(), "wb", closefd=False)


def flush_all() -> None:
    """Write every line still kept, now."""
    for logger in list(_LOGGERS):
        logger.flush()
