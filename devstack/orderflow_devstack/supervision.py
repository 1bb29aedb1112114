"""Services that come back when they die, like compose's `restart: unless-stopped`.

A supervised service that exits on its own (a crash, a failed start, a SIGKILL from a chaos test)
is started again after a pause: `first_delay`, doubling with every quick death up to `max_delay`,
and back to `first_delay` once a run lasted `stable_after` seconds. A service stopped on purpose
(ServiceProcess.stop(): the `make up` runner on Ctrl-C, a test at its end) stays down. Each
unexpected exit is reported with its cause and the pause, and each restart when it happens.

Used by `make up` (runner.py) and by tests that kill services and count on their return.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from orderflow_devstack.processes import ServiceProcess, ServiceSpec

_TAIL_LINES = 5


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting: exponential backoff, forgotten once a run was stable."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    # A service that had run this long before it died starts over at first_delay.
    stable_after: float = 10.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        """The pause before restarting a service that ran `uptime` seconds, `previous` being the
        pause that preceded that run (None: it had not been restarted before)."""
        if previous is None or uptime >= self.stable_after:
            return self.first_delay
        return min(previous * 2, self.max_delay)


@dataclass(frozen=True)
class Exit:
    """One exit of a supervised service, and what the supervisor did about it."""

    service: ServiceProcess
    returncode: int
    exited_at: float  # time.monotonic()
    uptime: float
    # The pause before the restart; None when the service was stopped on purpose and stays down.
    restart_in: float | None

    @property
    def cause(self) -> str:
        return describe_returncode(self.returncode)


def describe_returncode(returncode: int) -> str:
    """How a process ended, for people: subprocess reports death by a signal as a negative code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _to_stderr(message: str) -> None:
    print(f"orderflow: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Restarts the services made with `service()` whenever they exit without stop()."""

    def __init__(self, policy: RestartPolicy | None = None, *, report: Callable[[str], None] = _to_stderr) -> None:
        self.policy = policy or RestartPolicy()
        self._report = report
        self._lock = threading.Lock()
        self._exits: list[Exit] = []
        # The pause that preceded each service's current run.
        self._delays: dict[ServiceProcess, float] = {}

    def service(self, spec: ServiceSpec, sink: TextIO, *, color: int | None = None) -> ServiceProcess:
        """A supervised ServiceProcess: start() and stop() it as usual; if it exits without
        stop(), it is started again."""
        return ServiceProcess(spec, sink, color=color, on_exit=self._exited)

    @property
    def exits(self) -> list[Exit]:
        """Every exit so far, oldest first, deliberate stops included."""
        with self._lock:
            return list(self._exits)

    def _exited(self, service: ServiceProcess) -> None:
        """Runs on the service's output thread once its process has ended."""
        exited_at = time.monotonic()
        returncode = service.returncode
        assert returncode is not None, "on_exit runs after the process has ended"
        assert service.started_at is not None
        uptime = exited_at - service.started_at
        if service.stop_requested:
            with self._lock:
                self._exits.append(Exit(service, returncode, exited_at, uptime, restart_in=None))
                self._delays.pop(service, None)  # started again some day, it starts with a clean slate
            return
        with self._lock:
            delay = self.policy.next_delay(self._delays.get(service), uptime)
            self._delays[service] = delay
            self._exits.append(Exit(service, returncode, exited_at, uptime, restart_in=delay))
        tail = service.tail(_TAIL_LINES) if returncode > 0 else []  # a crash says why in its last lines
        last_output = "".join(f"\n    {line}" for line in tail)
        self._report(
            f"{service.name} {describe_returncode(returncode)} after {uptime:.1f}s; restarting in {delay:g}s"
            + (f"; its last output:{last_output}" if last_output else "")
        )
        restart = threading.Timer(delay, self._restart, args=(service,))
        restart.daemon = True
        restart.start()

    def _restart(self, service: ServiceProcess) -> None:
        if service.start_again():
            self._report(f"{service.name} restarted")
