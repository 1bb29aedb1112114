"""Optional TLS for gRPC between orderflow's services, from the ORDERFLOW_GRPC_TLS_* settings.

Nothing set: plaintext, the demo's default. A server serves TLS once it has a certificate and key,
and with grpc_tls_require_client_cert also demands a client certificate signed by grpc_tls_ca
(mutual TLS). A client dials over TLS once it has grpc_tls_ca to trust, and presents its own
certificate when it has one. The certificate of a server must name the host its clients dial
(a DNS name or an IP address in its subjectAltName). docs/security.md shows a set-up."""

from pathlib import Path

import grpc

from orderflow_kit.settings import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for a server's port, or None for plaintext."""
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return None
    require = settings.grpc_tls_require_client_cert
    return grpc.ssl_server_credentials(
        [(_read(settings.grpc_tls_key), _read(settings.grpc_tls_cert))],
        root_certificates=_read(settings.grpc_tls_ca) if require and settings.grpc_tls_ca else None,
        require_client_auth=require,
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a client's channels, or None for plaintext."""
    if settings.grpc_tls_ca is None:
        return None
    client_cert, client_key = settings.grpc_tls_client_cert, settings.grpc_tls_client_key
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.grpc_tls_ca),
        private_key=_read(client_key) if client_key else None,
        certificate_chain=_read(client_cert) if client_cert else None,
    )


def _read(path: Path) -> bytes:
    return path.read_bytes()
