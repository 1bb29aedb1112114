"""gRPC between services over TLS (orderflow_kit.grpc_tls), with the real inventory service and
certificates made at test time: a client holding the right certificates calls it; a plaintext
client, a client trusting another CA and, under mutual TLS, a client without a certificate from
the service's CA are all refused."""

from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from inventory.settings import InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_kit.grpc_client import channel
from orderflow_kit.grpc_tls import channel_credentials
from orderflow_kit.settings import Settings
from tests.support.certificates import CertificateAuthority
from tests.support.services import serving_inventory

CALL_TIMEOUT = 5.0


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    # Another CA, as an attacker or a misconfigured peer would have.
    stranger: CertificateAuthority


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(CertificateAuthority(tmp_path / "ca", "orderflow-ca"), CertificateAuthority(tmp_path / "x", "other-ca"))


def tls_server(settings: InventorySettings, pki: Pki, *, mutual: bool) -> InventorySettings:
    issued = pki.ca.issue("inventory", server=True)
    tls: dict[str, object] = {"grpc_tls_cert": issued.cert, "grpc_tls_key": issued.key}
    if mutual:
        tls |= {"grpc_tls_ca": pki.ca.cert, "grpc_tls_require_client_cert": True}
    return InventorySettings.model_validate({**settings.model_dump(), **tls})


def client(ca: CertificateAuthority | None, certificate_from: CertificateAuthority | None = None) -> Settings:
    """A client's settings: trusting `ca` (None: plaintext), with a certificate from `certificate_from`."""
    tls: dict[str, object] = {"grpc_tls_ca": ca.cert if ca else None}
    if certificate_from is not None:
        issued = certificate_from.issue("gateway", server=False)
        tls |= {"grpc_tls_client_cert": issued.cert, "grpc_tls_client_key": issued.key}
    return Settings.model_validate(tls)


async def list_products(address: str, settings: Settings) -> list[str]:
    async with channel(address, credentials=channel_credentials(settings)) as connection:
        stub = inventory_pb2_grpc.InventoryServiceStub(connection)
        response = await stub.ListProducts(inventory_pb2.ListProductsRequest(), timeout=CALL_TIMEOUT)
    return [product.sku for product in response.products]


async def assert_refused(address: str, settings: Settings) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await list_products(address, settings)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value


async def test_tls_serves_a_client_that_trusts_its_ca_and_refuses_plaintext_and_strangers(
    settings: InventorySettings, pki: Pki
) -> None:
    trusting = client(pki.ca)
    async with serving_inventory(tls_server(settings, pki, mutual=False), channel_credentials(trusting)) as address:
        assert await list_products(address, trusting)
        await assert_refused(address, client(None))
        await assert_refused(address, client(pki.stranger))


async def test_mutual_tls_serves_only_clients_with_a_certificate_from_its_ca(
    settings: InventorySettings, pki: Pki
) -> None:
    member = client(pki.ca, certificate_from=pki.ca)
    async with serving_inventory(tls_server(settings, pki, mutual=True), channel_credentials(member)) as address:
        assert await list_products(address, member)
        await assert_refused(address, client(pki.ca))  # no certificate
        await assert_refused(address, client(pki.ca, certificate_from=pki.stranger))
        await assert_refused(address, client(None))
