"""Reading Server-Sent Events over real HTTP, as a client would: each block of lines up to a blank
line is one message (an event, or only comments: a heartbeat)."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

# Every wait for the next message is bounded; only a failing test waits this long.
WITHIN = 20.0


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        assert self.data is not None, self
        return json.loads(self.data)


class EventStream:
    """One open text/event-stream response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._messages = _messages(response)

    async def next_message(self, within: float = WITHIN) -> Message:
        async with asyncio.timeout(within):
            return await anext(self._messages)

    async def next_event(self, within: float = WITHIN) -> Message:
        """The next message that is an event (skipping heartbeats and the opening comment)."""
        async with asyncio.timeout(within):
            async for message in self._messages:
                if message.event is not None:
                    return message
        raise AssertionError("the stream ended")

    async def until_it_ends(self, within: float = WITHIN) -> list[Message]:
        """Every message left, once the server has ended the stream."""
        async with asyncio.timeout(within):
            return [message async for message in self._messages]

    async def events_until(self, done: Any, within: float = WITHIN) -> list[Message]:
        """Events up to and including the first for which `done(event)` holds."""
        seen: list[Message] = []
        async with asyncio.timeout(within):
            while True:
                seen.append(await self.next_event(within))
                if done(seen[-1]):
                    return seen


async def _messages(response: httpx.Response) -> AsyncIterator[Message]:
    message = Message()
    started = False
    async for line in response.aiter_lines():
        if not line:
            if started:
                yield message
            message, started = Message(), False
            continue
        started = True
        if line.startswith(":"):
            message.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            message.data = value if message.data is None else f"{message.data}\n{value}"
        elif name == "event":
            message.event = value
        elif name == "id":
            message.id = value
        elif name == "retry":
            message.retry = int(value)


@asynccontextmanager
async def event_stream(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> AsyncIterator[EventStream]:
    """GET `path` as an event stream; leaving the block closes the connection, as a client that goes."""
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        yield EventStream(response)
