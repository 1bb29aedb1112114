"""Outages a test controls without stopping the session's shared servers: a port in front of a
server that refuses connections until `end()`, then forwards them."""

import asyncio

from sqlalchemy.engine import make_url

from orderflow_devstack.infra import free_port


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


class LostAnswers:
    """A gRPC (HTTP/2, plaintext) proxy in front of the server at `target_host:target_port` that,
    while `losing` is set, resets the connection as soon as the server starts answering a call
    (its first HEADERS or DATA frame on a stream): the server did the work, the client never hears
    of it, as when a server is killed or a connection reset between its commit and its answer.
    Connection set-up (SETTINGS, PING, WINDOW_UPDATE on stream 0) passes, so calls do reach the
    server. `lost` counts the answers lost."""

    _HEADERS_OR_DATA = frozenset({0x0, 0x1})

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self.losing = False
        self.lost = 0
        self._proxy: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._proxy = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            await self._proxy.wait_closed()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(
            _pipe(client_reader, server_writer), self._answers(server_reader, client_writer, server_writer)
        )

    async def _answers(
        self,
        server_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        server_writer: asyncio.StreamWriter,
    ) -> None:
        """Forward the server's frames one by one, until one is an answer to lose."""
        try:
            while True:
                header = await server_reader.readexactly(9)
                payload = await server_reader.readexactly(int.from_bytes(header[:3], "big"))
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                if self.losing and stream and header[3] in self._HEADERS_OR_DATA:
                    self.lost += 1
                    client_writer.transport.abort()  # a reset, not a clean close
                    server_writer.transport.abort()
                    return
                client_writer.write(header + payload)
                await client_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            client_writer.close()
