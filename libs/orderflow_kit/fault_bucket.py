"""The fault flags' shared switch: a JetStream key-value bucket that every service watches, so one
write (`PUT /v1/admin/faults`) reaches every replica of every service within moments
(docs/fault-flags.md). The environment and the file (orderflow_kit.faults) stay as they were; the
bucket's flags override theirs, flag by flag.

- One key, `flags`, holds the whole set as a fault spec (one `name=value` a line, the faults
  module's syntax): a write replaces the set at once, never flag by flag, and an empty value, a
  deleted or purged key, or no bucket at all mean no fault from the bucket.
- `watch_fault_flags` runs beside each service and never ends by itself: with NATS away (at start
  or later) it keeps the flags it last saw and tries again with backoff. It follows the key with
  a watcher (an ordered consumer) and reads the key again whenever the watcher has been quiet for
  `resync_seconds`, so an update lost while the broker restarted still arrives.
- Injection points never wait for any of this: they read the flags already in memory."""

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from orderflow_kit import faults
from orderflow_kit.nats import connect, raise_if_cancelled

log = structlog.get_logger()

BUCKET = "ORDERFLOW_FAULTS"
# A bucket name: what NATS allows, and what ORDERFLOW_FAULTS_BUCKET is checked against.
BUCKET_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
KEY = "flags"
# Past sets kept in the bucket (`nats kv history ORDERFLOW_FAULTS flags`): who broke what, when.
HISTORY = 16
RESYNC_SECONDS = 5.0
RETRY_MAX_SECONDS = 5.0


@dataclass(frozen=True)
class StoredFlags:
    """The bucket's flags as `faults.canonical` writes them, and the key's revision (None: never set)."""

    values: dict[str, str] = field(default_factory=dict)
    revision: int | None = None
    # Why the stored spec puts no fault in force: it does not parse (written around the API).
    ignored: str | None = None


async def open_bucket(js: JetStreamContext, bucket: str = BUCKET) -> KeyValue:
    """The bucket, created when it is not there yet (whoever comes first: a service or the gateway)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=bucket,
        description="orderflow fault flags (docs/fault-flags.md)",
        history=HISTORY,
        storage=StorageType.FILE,
    )
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # created meanwhile by another process, perhaps with other settings
        return await js.key_value(bucket)


async def read_flags(js: JetStreamContext, bucket: str = BUCKET) -> StoredFlags:
    """The flags the bucket holds now; none when it or its key is not there."""
    try:
        kv = await js.key_value(bucket)
        entry = await kv.get(KEY)
    except (BucketNotFoundError, KeyNotFoundError):
        return StoredFlags()
    try:
        return StoredFlags(faults.flag_values(_text(entry.value)), entry.revision)
    except faults.FaultSpecError as error:
        return StoredFlags({}, entry.revision, ignored=str(error))


async def write_flags(js: JetStreamContext, values: dict[str, str], bucket: str = BUCKET) -> StoredFlags:
    """Replace the whole set with `values` (flag name -> value, as in a spec; {} for none).
    Raises faults.FlagError, writing nothing, for an unknown flag or a value it cannot take."""
    spec = faults.spec_of(values)
    kv = await open_bucket(js, bucket)
    revision = await kv.put(KEY, spec.encode())
    return StoredFlags(faults.canonical(values), revision)


async def watch_fault_flags(
    nats_url: str,
    *,
    service: str,
    bucket: str = BUCKET,
    use: Callable[[str], None] | None = None,
    resync_seconds: float = RESYNC_SECONDS,
    retry_max_seconds: float = RETRY_MAX_SECONDS,
) -> None:
    """Run until cancelled: hand every new spec of the bucket's key to `use` (by default
    `faults.use_bucket_spec`, which puts it in force in this process). Never returns and never
    raises but CancelledError, whatever NATS does: a service must not stop for its fault flags."""
    follower = _Follower(bucket, use or _in_force(bucket))
    connection: Client | None = None
    try:
        while True:
            try:
                if connection is None:
                    connection = await connect(nats_url, name=f"{service}-fault-flags")
                await follower.follow(connection.jetstream(), resync_seconds, on_watching=follower.reset_failures)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # whatever it is, the service keeps running
                failures = follower.failed()
                delay = min(retry_max_seconds, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                # Said once per outage (then at debug level): "nats disconnected" says the rest.
                (log.warning if failures == 1 else log.debug)(
                    "fault flags unreachable; the last ones stay in force",
                    bucket=bucket,
                    error_class=type(error).__name__,
                    error=str(error),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def _in_force(bucket: str) -> Callable[[str], None]:
    def use(spec: str) -> None:
        faults.use_bucket_spec(spec, source=f"bucket {bucket}")

    return use


class _Follower:
    """Hands each new value of the key over once, and never an older one after a newer."""

    def __init__(self, bucket: str, use: Callable[[str], None]) -> None:
        self._bucket = bucket
        self._use = use
        self._spec: str | None = None
        self._revision = 0
        self._failures = 0

    def failed(self) -> int:
        self._failures += 1
        return self._failures

    def reset_failures(self) -> None:
        if self._failures:
            log.info("fault flags watched again", bucket=self._bucket, after_failures=self._failures)
        self._failures = 0

    async def follow(self, js: JetStreamContext, resync_seconds: float, *, on_watching: Callable[[], None]) -> None:
        kv = await open_bucket(js, self._bucket)
        watcher = await kv.watch(KEY)
        try:
            await self._read(kv)
            on_watching()
            while True:
                raise_if_cancelled()  # a stop while reading or watching must not go unnoticed
                try:
                    entry = await watcher.updates(timeout=resync_seconds)  # type: ignore[no-untyped-call]
                except TimeoutError:  # nats.errors.TimeoutError is one too
                    await self._read(kv)
                    continue
                if entry is None:  # "nothing more for now", after the current value
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE)
                self._take("" if deleted else _text(entry.value), entry.revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _read(self, kv: KeyValue) -> None:
        try:
            entry = await kv.get(KEY)
        except KeyNotFoundError as missing:  # never set (no entry), deleted or purged
            self._take("", missing.entry.revision if missing.entry is not None else None)
            return
        self._take(_text(entry.value), entry.revision)

    def _take(self, spec: str, revision: int | None) -> None:
        if revision is not None:
            if revision < self._revision:
                return  # the watcher is behind a read already taken
            self._revision = revision
        if spec == self._spec:
            return
        self._spec = spec
        log.info("fault flags received", bucket=self._bucket, revision=revision, spec=spec.strip())
        self._use(spec)


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", errors="replace")
