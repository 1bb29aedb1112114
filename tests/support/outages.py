"""Outages a test controls without stopping the session's shared servers: a port in front of a
server that refuses connections until `end()`, then forwards them."""

import asyncio
from asyncio import StreamReader, StreamWriter

from sqlalchemy.engine import make_url

from tests.support.tcp_proxy import Proxy


class Outage(Proxy):
    """Connect to `port` (on 127.0.0.1) instead of the server at `target_host:target_port`: refused
    until `end()`, forwarded afterwards, refused again after `close()`."""

    @classmethod
    def in_front_of(cls, url: str, default_port: int) -> tuple["Outage", str]:
        """An outage in front of the server at `url`, and the same URL (credentials and all)
        through the outage."""
        server = make_url(url)
        outage = cls(server.host or "127.0.0.1", server.port or default_port)
        return outage, server.set(host="127.0.0.1", port=outage.port).render_as_string(hide_password=False)

    async def end(self) -> None:
        """The outage is over: connections are forwarded from now on."""
        await self.start()


class LostAnswers(Proxy):
    """A gRPC (HTTP/2, plaintext) proxy in front of the server at `target_host:target_port` that,
    while `losing` is set, resets the connection as soon as the server starts answering a call
    (its first HEADERS or DATA frame on a stream): the server did the work, the client never hears
    of it, as when a server is killed or a connection reset between its commit and its answer.
    Connection set-up (SETTINGS, PING, WINDOW_UPDATE on stream 0) passes, so calls do reach the
    server. `lost` counts the answers lost."""

    _HEADERS_OR_DATA = frozenset({0x0, 0x1})

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.losing = False
        self.lost = 0

    async def _answer(
        self, server_reader: StreamReader, client_writer: StreamWriter, server_writer: StreamWriter
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
