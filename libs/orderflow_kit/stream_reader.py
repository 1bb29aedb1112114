"""Reading a JetStream stream live from a position, for as long as someone listens (a gateway's
live event feed, say): every message from the start on, in stream order, each once, none skipped
while the stream still has it; and whether it has caught up with the stream, for whoever merges
it with another.

The reader keeps the position itself: the sequence of the last message it gave out. It reads
through an ephemeral pull consumer without acks, made for it and deleted by `close`, and
replaces that consumer, from the message after the position, whenever it may have lost track:

- the consumer is gone: the broker restarted, or removed it after INACTIVE_THRESHOLD_SECONDS
  without a pull (the reader was blocked by a slow listener, or the gateway was cut off);
- a gap in the consumer's own delivery count: messages it sent were lost on the way (a dropped
  connection), so they will never be delivered again without acks;
- the broker is unreachable: once it answers again.

Why not nats-py's ordered consumer, which does much the same for push consumers: when it
recreates its consumer it keeps a start time it was given next to the start sequence (the broker
refuses that consumer: "deliver by start sequence, but optional start time is also set", and
nothing more comes), and before its first message it restarts from the stream's first sequence,
whatever start it was given."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Final

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from orderflow_kit.pull_requests import fetch_as_soon_as_stored

log = structlog.get_logger()

# Messages asked for at a time; the next batch is asked for once these are given out.
FETCH_BATCH: Final = 64
# How long one pull waits for messages; after an empty one the reader checks its consumer.
FETCH_SECONDS: Final = 5.0
# The broker deletes a consumer nobody pulled from for this long (a reader that died with its process).
INACTIVE_THRESHOLD_SECONDS: Final = 30.0
# How long to wait before trying again while the broker is unreachable.
RETRY_SECONDS: Final = 1.0


class StreamReader:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subjects: list[str],
        *,
        after: int = 0,
        since: datetime | None = None,
        description: str = "",
    ) -> None:
        """Read `stream`'s messages on `subjects`: those after sequence `after`; with `after` 0 and
        a `since`, those stored from that time on."""
        self._js = js
        self.stream = stream
        self._subjects = subjects
        # The last sequence given out (or the one to read after); until then, `since` may say where to start.
        self.last_sequence = after
        self._since = since if after == 0 else None
        self._description = description
        self._name_prefix = f"reader-{uuid.uuid4().hex[:16]}"
        self._incarnation = 0
        self._consumer: str | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        # How many messages the current consumer has delivered that this reader received.
        self._delivered = 0
        # Whether the reader has given out every message the stream held when it last looked.
        self.caught_up = False

    async def open(self) -> None:
        """Make the first consumer; raises the broker's errors (nothing is left behind then)."""
        try:
            await self._create()
        except BaseException:
            await self.close()
            raise

    async def batches(self) -> AsyncIterator[list[Msg]]:
        """The messages as they come, a batch at a time; an empty batch when a wait for more ended
        without any. Until the connection is closed for good (nats.errors.ConnectionClosedError)."""
        while True:
            batch = await self._next_batch()
            given: list[Msg] = []
            for message in batch:
                if message.metadata.sequence.consumer != self._delivered + 1:
                    await self._replace_when_reachable("a gap in the consumer's deliveries")
                    break
                self._delivered += 1
                self.last_sequence = message.metadata.sequence.stream
                self._since = None
                self.caught_up = message.metadata.num_pending == 0
                given.append(message)
            yield given

    async def close(self) -> None:
        """Delete the consumer; best effort while the broker is away (it deletes it by itself later)."""
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._subscription.unsubscribe()
            self._subscription = None
        if self._consumer is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._js.delete_consumer(self.stream, self._consumer)
            self._consumer = None

    async def _next_batch(self) -> list[Msg]:
        """The next messages; none when none came within FETCH_SECONDS, or the consumer was replaced."""
        if self._subscription is None:
            await self._replace_when_reachable("no consumer")
            return []
        try:
            # nats-py's own fetch may hold a message for a whole FETCH_SECONDS (pull_requests says why).
            return await fetch_as_soon_as_stored(self._subscription)(FETCH_BATCH, timeout=FETCH_SECONDS)
        except nats.errors.TimeoutError:
            if await self._intact():
                self.caught_up = True
            else:
                await self._replace_when_reachable("the consumer is gone or missed messages")
            return []
        except nats.errors.ConnectionClosedError:
            raise
        except (nats.errors.Error, OSError) as error:
            await self._replace_when_reachable(f"{type(error).__name__}: {error}")
            return []

    async def _intact(self) -> bool:
        """Whether the consumer still exists and delivered nothing this reader did not receive."""
        assert self._consumer is not None
        try:
            info = await self._js.consumer_info(self.stream, self._consumer)
        except NotFoundError:
            return False
        except nats.errors.ConnectionClosedError:
            raise
        except (nats.errors.Error, OSError):
            return False
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        return bool(delivered == self._delivered)

    async def _replace_when_reachable(self, why: str) -> None:
        """Delete the consumer and make a new one from the position, once the broker answers."""
        log.info("stream reader replaces its consumer", stream=self.stream, after=self.last_sequence, why=why)
        while True:
            await self.close()
            try:
                await self._create()
            except nats.errors.ConnectionClosedError:
                raise
            except (nats.errors.Error, OSError) as error:
                log.debug("stream reader waits for the broker", stream=self.stream, error=str(error))
                await asyncio.sleep(RETRY_SECONDS)
            else:
                return

    async def _create(self) -> None:
        self._incarnation += 1
        name = f"{self._name_prefix}-{self._incarnation}"
        config = api.ConsumerConfig(
            name=name,
            description=self._description,
            filter_subjects=self._subjects,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        if self._since is not None:
            config.deliver_policy, config.opt_start_time = api.DeliverPolicy.BY_START_TIME, self._since
        else:
            config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, self.last_sequence + 1
        self._consumer = name  # before it exists: a cancelled add still gets deleted by close()
        info = await self._js.add_consumer(self.stream, config)
        self._subscription = await self._js.pull_subscribe_bind(consumer=name, stream=self.stream)
        self._delivered = 0
        self.caught_up = info.num_pending == 0
