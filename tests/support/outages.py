"""Outages a test controls without stopping the session's shared servers: a port in front of a
server that refuses connections until `end()`, then forwards them."""

import asyncio

from sqlalchemy.engine import make_url

from orderflow_kit.infra import free_port


class Outage:
    """Connect to `port` (on 127.0.0.1) instead of the server at `target_host:target_port`: refused
    until `end()`, forwarded afterwards, refused again after `close()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._proxy: asyncio.Server | None = None

    @classmethod
    def in_front_of(cls, url: str, default_port: int) -> tuple["Outage", str]:
        """An outage in front of the server at `url`, and the same URL (credentials and all)
        through the outage."""
        server = make_url(url)
        outage = cls(server.host or "127.0.0.1", server.port or default_port)
        return outage, server.set(host="127.0.0.1", port=outage.port).render_as_string(hide_password=False)

    async def end(self) -> None:
        self._proxy = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            await self._proxy.wait_closed()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
