"""A TCP proxy a test can watch and break: it counts the connections made through it and the
bytes its clients send, and can freeze the connections it has (they stay open and carry nothing,
as behind a dead host or a dropped NAT entry) while new ones go through."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.support.tcp_proxy import Proxy, pipe


@dataclass
class _Connection:
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    flowing: asyncio.Event = field(default_factory=asyncio.Event)


class WatchedProxy(Proxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.bytes_from_client = 0
        self._connections: list[_Connection] = []

    @property
    def connections(self) -> int:
        """How many connections were made through the proxy."""
        return len(self._connections)

    def freeze(self) -> None:
        """The connections made so far carry nothing more, and stay open."""
        for connection in self._connections:
            connection.flowing.clear()

    async def close(self) -> None:
        """Close every connection made, then stop listening."""
        for connection in self._connections:
            for writer in connection.writers:
                writer.close()
            connection.flowing.set()
        await super().close()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        connection = _Connection((client_writer, server_writer))
        connection.flowing.set()
        self._connections.append(connection)

        async def from_client(data: bytes) -> None:
            await connection.flowing.wait()
            self.bytes_from_client += len(data)

        async def from_server(_data: bytes) -> None:
            await connection.flowing.wait()

        await asyncio.gather(
            pipe(client_reader, server_writer, from_client), pipe(server_reader, client_writer, from_server)
        )


@contextlib.asynccontextmanager
async def watched_proxy(target_host: str, target_port: int) -> AsyncIterator[WatchedProxy]:
    """A proxy on a free port of 127.0.0.1 to `target_host:target_port`, closed with every
    connection it made when the block ends."""
    proxy = WatchedProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
