"""A JetStream fetch that sends one kind of pull request only, so that an idle consumer can wait long
and a message is still handed over the moment it is stored.

nats-py's `fetch(batch > 1)` sends a `no_wait` request, and when that finds nothing, a plain lingering
one. A plain request left on the server by a fetch whose time ran out takes the next message, and the
fetch then running waits for its batch to fill until its own time runs out (nats-io/nats.py#986). So
a consumer had to poll every 50 ms, costing an idle consumer and nats-server about 20 ms of CPU a
second each, to bound that wait.

`fetch_as_soon_as_stored` sends only `{"batch": n, "expires": ..., "no_wait": true}`: NATS holds it
until the consumer has messages (or it expires), delivers what it has, up to n, and ends it with a
404 status. So a fetch returns as soon as anything is delivered, and a request left behind by an
earlier fetch delivers into the same inbox and ends the same way: it can never hold a message back.
Its `expires` is a little shorter than the fetch's wait, so a request's own 408 normally ends the
fetch that sent it; a status that arrives late is read, and dropped, by the next fetch.

It reads nats-py's pull subscription's inbox and request subject (private attributes, hence the
pinned version and tests/integration/kit/test_pull_requests.py)."""

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

# nats-py's default wait, for a caller that gives none.
DEFAULT_WAIT_SECONDS = 5.0
# The server lets a request expire this much before the fetch that sent it stops waiting.
EXPIRES_MARGIN_SECONDS = 0.25
# Statuses that end a pull request: 404 nothing (more) to deliver, 408 expired, 409 refused
# (the consumer deleted, too many requests waiting...).
_REQUEST_OVER = {"404", "408", "409"}
_IDLE_HEARTBEAT = "100"


class Fetch(Protocol):
    """nats-py's `PullSubscription.fetch`, as FastStream calls it."""

    def __call__(
        self, batch: int = 1, timeout: float | None = DEFAULT_WAIT_SECONDS, heartbeat: float | None = None
    ) -> Coroutine[Any, Any, list[Msg]]: ...


def fetch_as_soon_as_stored(subscription: JetStreamContext.PullSubscription) -> Fetch:
    """A `fetch(batch, timeout)` for `subscription` that returns the messages of one pull request as
    soon as they are delivered, and raises nats' TimeoutError when none came within `timeout`."""
    inbox = subscription._sub
    request_subject = subscription._nms
    deliver_to = subscription._deliver
    connection = subscription._nc

    # nats-py's signature, which FastStream calls: the timeout is the fetch's own.
    async def fetch(
        batch: int = 1,
        timeout: float | None = DEFAULT_WAIT_SECONDS,  # noqa: ASYNC109
        heartbeat: float | None = None,
    ) -> list[Msg]:
        """`heartbeat` is accepted and not used: nothing here waits for one."""
        messages = await _delivered_meanwhile(inbox)
        if messages:
            return messages
        wait = DEFAULT_WAIT_SECONDS if timeout is None else timeout
        expires = max(wait - EXPIRES_MARGIN_SECONDS, wait / 2)
        request = {"batch": batch, "expires": int(expires * 1e9), "no_wait": True}
        await connection.publish(request_subject, orjson.dumps(request), reply=deliver_to)
        deadline = time.monotonic() + wait
        while True:
            try:
                message = await inbox.next_msg(timeout=max(deadline - time.monotonic(), 0.001))
            except nats.errors.TimeoutError:
                if messages:  # delivered, and the status that ends the request not (yet) here
                    return messages
                raise
            status = JetStreamContext.is_status_msg(message)
            if not status:
                messages.append(message)
                if len(messages) >= batch:
                    return messages
            elif status in _REQUEST_OVER:
                if messages:
                    return messages
                if status == "409":  # refused at once: wait out the fetch's time rather than ask again now
                    await asyncio.sleep(max(deadline - time.monotonic(), 0))
                raise nats.errors.TimeoutError
            elif status != _IDLE_HEARTBEAT:
                raise nats.js.errors.APIError.from_msg(message)

    return fetch


async def _delivered_meanwhile(inbox: Subscription) -> list[Msg]:
    """What earlier requests delivered after their fetch had returned, without their statuses."""
    messages = []
    while inbox.pending_msgs:
        message = await inbox.next_msg(timeout=1.0)
        if not JetStreamContext.is_status_msg(message):
            messages.append(message)
    return messages
