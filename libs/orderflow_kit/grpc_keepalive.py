"""gRPC keepalive on both ends of every connection between orderflow's services.

A connection that carries nothing for a while is still checked: the client pings it, so a peer that
vanished without closing (a killed host, a dropped NAT entry) is noticed within `time + timeout`
instead of at the next call's deadline, and a proxy or load balancer that drops idle connections
sees traffic. The server accepts those pings (grpc's default would answer them with GOAWAY
`too_many_pings`) and ages every connection out after `max_connection_age`, with a GOAWAY and a
grace for the calls in flight, so clients spread again over replicas that were added meanwhile.
A client's channel reconnects after a GOAWAY by itself; nothing in the services handles it."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from orderflow_kit.settings import Settings

ChannelOptions = list[tuple[str, int]]


@dataclass(frozen=True)
class Keepalive:
    """The defaults are the settings' defaults (ORDERFLOW_GRPC_KEEPALIVE_SECONDS and the rest)."""

    time_seconds: float = 20.0
    timeout_seconds: float = 10.0
    max_connection_age_seconds: float = 300.0
    max_connection_age_grace_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: "Settings") -> Self:
        return cls(
            time_seconds=settings.grpc_keepalive_seconds,
            timeout_seconds=settings.grpc_keepalive_timeout_seconds,
            max_connection_age_seconds=settings.grpc_max_connection_age_seconds,
            max_connection_age_grace_seconds=settings.grpc_max_connection_age_grace_seconds,
        )

    def client_options(self) -> ChannelOptions:
        return [
            ("grpc.keepalive_time_ms", _ms(self.time_seconds)),
            ("grpc.keepalive_timeout_ms", _ms(self.timeout_seconds)),
            # grpc 1.85 times an unanswered ping out after this (default 60 s), keepalive or not.
            ("grpc.http2.ping_timeout_ms", _ms(self.timeout_seconds)),
            # Ping an idle connection too, and keep pinging it (grpc stops after 2 pings without data).
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> ChannelOptions:
        """The client's options (a server pings its clients the same way), and what a server adds."""
        return [
            *self.client_options(),
            # Clients ping every `time_seconds`: accept pings twice as often, idle or not, so that a
            # ping a little early is no strike against the client.
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.time_seconds / 2)),
            ("grpc.max_connection_age_ms", _ms(self.max_connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", _ms(self.max_connection_age_grace_seconds)),
        ]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


DEFAULT_KEEPALIVE = Keepalive()
