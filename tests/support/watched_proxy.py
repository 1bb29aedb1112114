"""A TCP proxy a test can watch and break: it counts the connections made through it and the
bytes its clients send, and can freeze the connections it has (they stay open and carry nothing,
as behind a dead host or a dropped NAT entry) while new ones go through."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from orderflow_devstack.infra import free_port


@dataclass
class _Connection:
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    flowing: asyncio.Event = field(default_factory=asyncio.Event)


class WatchedProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self.bytes_from_client = 0
        self._connections: list[_Connection] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many connections were made through the proxy."""
        return len(self._connections)

    def freeze(self) -> None:
        """The connections made so far carry nothing more, and stay open."""
        for connection in self._connections:
            connection.flowing.clear()

    def close(self) -> None:
        for connection in self._connections:
            for writer in connection.writers:
                writer.close()
            connection.flowing.set()

    async def forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        connection = _Connection((client_writer, server_writer))
        connection.flowing.set()
        self._connections.append(connection)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, connection.flowing, from_client=True),
            self._pipe(server_reader, client_writer, connection.flowing, from_client=False),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event, *, from_client: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                await flowing.wait()
                if from_client:
                    self.bytes_from_client += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def watched_proxy(target_host: str, target_port: int) -> AsyncIterator[WatchedProxy]:
    """A proxy on a free port of 127.0.0.1 to `target_host:target_port`, closed with every
    connection it made when the block ends."""
    proxy = WatchedProxy(target_host, target_port)
    server = await asyncio.start_server(proxy.forward, "127.0.0.1", proxy.port)
    try:
        yield proxy
    finally:
        server.close()
        proxy.close()
