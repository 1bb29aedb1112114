"""A TCP proxy on a free port of 127.0.0.1, the base of the proxies tests put between a client and
one of the session's servers to break what passes (outages.py, watched_proxy.py)."""

import asyncio
from asyncio import StreamReader, StreamWriter
from collections.abc import Awaitable, Callable

from orderflow_devstack.infra import free_port


async def pipe(
    reader: StreamReader,
    writer: StreamWriter,
    passing: Callable[[bytes], Awaitable[None]] | None = None,
) -> None:
    """Copy `reader` to `writer` until either side closes, then close `writer`. `passing` sees each
    chunk before it goes on, and may hold it back by not returning yet."""
    try:
        while data := await reader.read(65536):
            if passing is not None:
                await passing(data)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class Proxy:
    """Forwards connections to `target_host:target_port` from `start()` until `close()`; a
    subclass decides what becomes of the server's answers (`_answer`)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _forward(self, client_reader: StreamReader, client_writer: StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(
            pipe(client_reader, server_writer), self._answer(server_reader, client_writer, server_writer)
        )

    async def _answer(
        self, server_reader: StreamReader, client_writer: StreamWriter, server_writer: StreamWriter
    ) -> None:
        """Pass the server's bytes on to the client, as they come."""
        await pipe(server_reader, client_writer)
