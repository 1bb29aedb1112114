"""The `infra` fixture gives real, working servers, the ones we own survive a restart, and the
NATS server we start lets in only a client with the user and password its URL carries."""

import uuid
from urllib.parse import urlsplit

import asyncpg
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType
from redis.asyncio import Redis

from orderflow_devstack.infra import Infrastructure
from tests.support.jetstream import jetstream


def unique(prefix: str) -> str:
    """Names no other test (or an earlier run against the same server) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def add_stream_with_one_message(js: JetStreamContext, stream: str) -> None:
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], storage=StorageType.FILE)
    ack = await js.publish(f"{stream}.created", b"hello")
    assert (ack.stream, ack.seq, ack.duplicate) == (stream, 1, None)


async def test_nats_has_jetstream(infra: Infrastructure) -> None:
    stream = unique("INFRA")
    async with jetstream(infra.nats_url) as js:
        await add_stream_with_one_message(js, stream)
        await js.delete_stream(stream)


async def test_nats_refuses_a_client_without_the_right_password(infra: Infrastructure) -> None:
    if infra.nats is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: its authentication is not ours to check")
    server = urlsplit(infra.nats_url)
    assert server.username, "the URL carries the user"
    assert server.password, "the URL carries the password"

    async def quiet(_error: Exception) -> None:
        """The refusal is the exception below; nats-py need not log it too."""

    for intruder in (
        f"nats://{server.hostname}:{server.port}",
        f"nats://{server.username}:wrong@{server.netloc.split('@')[1]}",
    ):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(intruder, allow_reconnect=False, max_reconnect_attempts=1, error_cb=quiet)

    stream = unique("AUTH")
    async with jetstream(infra.nats_url) as js:  # the URL's own user and password: in, JetStream and all
        await add_stream_with_one_message(js, stream)
        await js.delete_stream(stream)


async def test_postgres_answers_and_creates_databases(infra: Infrastructure) -> None:
    database = unique("infra_test")
    connection = await asyncpg.connect(infra.postgres_url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
        await connection.execute(f'CREATE DATABASE "{database}"')
        assert await connection.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", database) == 1
        await connection.execute(f'DROP DATABASE "{database}"')
    finally:
        await connection.close()


async def test_redis_sets_and_gets(infra: Infrastructure) -> None:
    key = unique("infra-test")
    client = Redis.from_url(infra.redis_url)
    try:
        assert await client.set(key, "value", ex=60)
        assert await client.get(key) == b"value"
    finally:
        await client.aclose()


async def test_nats_restart_keeps_stream_messages(infra: Infrastructure) -> None:
    if infra.nats is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: not ours to restart")
    stream = unique("INFRA")
    async with jetstream(infra.nats_url) as js:
        await add_stream_with_one_message(js, stream)

    infra.nats.stop()
    infra.nats.start()

    async with jetstream(infra.nats_url) as js:
        assert (await js.stream_info(stream)).state.messages == 1
        assert (await js.get_msg(stream, 1)).data == b"hello"
        await js.delete_stream(stream)


async def test_postgres_survives_stop_and_kill(infra: Infrastructure) -> None:
    if infra.postgres is None:
        pytest.skip("PostgreSQL comes from ORDERFLOW_POSTGRES_URL: not ours to restart")
    table = unique("infra_test")
    connection = await asyncpg.connect(infra.postgres_url)
    try:
        await connection.execute(f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)")
    finally:
        await connection.close()

    infra.postgres.stop()
    infra.postgres.start()
    infra.postgres.kill()  # a crash: committed rows come back through WAL recovery
    infra.postgres.start()

    connection = await asyncpg.connect(infra.postgres_url)
    try:
        assert await connection.fetchval(f"SELECT id FROM {table}") == 1
        await connection.execute(f"DROP TABLE {table}")
    finally:
        await connection.close()
