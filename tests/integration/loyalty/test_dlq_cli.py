"""`orderflow dlq count / list / show / replay / purge` against the real broker, through the real CLI app."""

import asyncio
import json
import re
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from loyalty.settings import LoyaltySettings
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_devstack.cli import app
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.db import create_engine
from orderflow_kit.dead_letters import get_dead_letter
from orderflow_kit.settings import MAKE_UP_ENV_FILE
from tests.integration.loyalty.helpers import (
    assert_awarded_once,
    balance,
    consuming,
    dead_letters,
    new_customer_id,
)
from tests.support.events import order_created, order_created_payload, publish
from tests.support.jetstream import acked_through
from tests.support.polling import eventually


async def orderflow(*args: str) -> Result:
    """Run the CLI in a thread: its commands run their own event loop (asyncio.run)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_dlq_list_and_show_describe_a_dead_letter(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    poison = order_created(new_customer_id(), body=b"not JSON at all")
    async with consuming(settings, engine, js):
        ack = await publish(js, poison)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))
    [letter] = await dead_letters(js, settings.order_events.consumer)
    nats = ("--nats-url", settings.nats_url)

    listed = await orderflow("dlq", "list", "--consumer", settings.order_events.consumer, "--json", *nats)
    table = await orderflow("dlq", "list", "--consumer", settings.order_events.consumer, *nats)
    shown = await orderflow("dlq", "show", str(letter.sequence), *nats)

    assert listed.exit_code == 0, listed.output
    [summary] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert summary["sequence"] == letter.sequence
    assert summary["reason"] == "permanent"
    assert summary["ce_id"] == poison.id
    assert summary["deliveries"] == "1"
    assert summary["error"].startswith("invalid OrderCreatedV1 payload")
    assert table.exit_code == 0, table.output
    assert str(letter.sequence) in table.stdout
    assert poison.id in table.stdout
    assert shown.exit_code == 0, shown.output
    details = json.loads(shown.stdout)
    assert details["sequence"] == letter.sequence
    assert details["headers"]["ce-id"] == poison.id
    assert details["headers"]["dlq-reason"] == "permanent"
    assert details["headers"]["dlq-stream-sequence"] == str(ack.seq)
    assert details["body_text"] == "not JSON at all"


async def test_dlq_finds_the_nats_url_make_up_wrote_when_the_environment_has_none(
    settings: LoyaltySettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside `make up`, `orderflow dlq count` works as it is: the URL and its password are in .state."""
    (tmp_path / MAKE_UP_ENV_FILE).parent.mkdir()
    (tmp_path / MAKE_UP_ENV_FILE).write_text(f"ORDERFLOW_NATS_URL={settings.nats_url}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORDERFLOW_NATS_URL")

    result = await orderflow("dlq", "count", "--json")

    assert result.exit_code == 0, result.output
    assert "total" in json.loads(result.stdout)


async def test_dlq_show_and_replay_of_an_unknown_sequence_exit_1_with_a_message(settings: LoyaltySettings) -> None:
    for command in ("show", "replay"):
        result = await orderflow("dlq", command, "999999999", "--nats-url", settings.nats_url)

        assert result.exit_code == 1
        assert "no dead letter with sequence 999999999" in result.stderr
        assert "Traceback" not in result.output


async def test_a_consumer_name_that_would_widen_the_filter_is_a_usage_error() -> None:
    """`a.>` would match other consumers' dead letters: refused before anything is read or purged."""
    for command in (("count",), ("list",), ("replay", "--all"), ("purge", "--yes")):
        result = await orderflow("dlq", *command, "--consumer", "a.>", "--nats-url", "nats://127.0.0.1:9")

        assert result.exit_code == 2, (command, result.output)
        assert "is not a consumer name" in result.stderr


async def test_dlq_commands_exit_1_with_a_message_when_nats_is_unreachable() -> None:
    result = await orderflow("dlq", "list", "--nats-url", "nats://127.0.0.1:1")

    assert result.exit_code == 1
    assert "NATS at nats://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.output


async def test_replaying_a_fixed_payload_awards_once_and_replaying_it_again_still_awards_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext, tmp_path: Path
) -> None:
    """The same broken event (one ce-id) reached the consumer twice, so it has two dead letters.
    Both are replayed with the fixed body: the points are awarded once."""
    customer = new_customer_id()
    broken = order_created(customer, body=json.dumps(order_created_payload(customer, total_cents=-4200)).encode())
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(order_created_payload(customer, total_cents=4200)))

    async with consuming(settings, engine, js):
        await publish(js, broken)
        again = await publish(js, broken, msg_id=f"{broken.id}-again")
        await eventually(lambda: acked_through(js, settings.order_events.consumer, again.seq))
        first, second = await dead_letters(js, settings.order_events.consumer)

        replayed = await orderflow(
            "dlq", "replay", str(first.sequence), "--payload", str(fixed), "--nats-url", settings.nats_url
        )
        assert replayed.exit_code == 0, replayed.output
        first_replay = replayed_sequence(replayed)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, first_replay))
        assert (await balance(engine, customer)).points == 42

        replayed_again = await orderflow(
            "dlq", "replay", str(second.sequence), "--payload", str(fixed), "--nats-url", settings.nats_url
        )
        assert replayed_again.exit_code == 0, replayed_again.output
        await eventually(lambda: acked_through(js, settings.order_events.consumer, replayed_sequence(replayed_again)))

    await assert_awarded_once(engine, customer, broken.id, points=42)
    assert await dead_letters(js, settings.order_events.consumer) == []  # replayed ones are deleted
    republished = await js.get_msg(ORDERS_STREAM, first_replay)
    assert republished.headers is not None
    assert republished.headers["ce-id"] == broken.id  # the same event for the dedupe table
    assert republished.headers["Nats-Msg-Id"] not in (broken.id, f"{broken.id}-again")  # new for the broker
    assert republished.data == fixed.read_bytes()


async def test_a_payload_replay_the_broker_drops_as_a_repeat_is_refused_not_reported_as_published(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext, tmp_path: Path
) -> None:
    """An earlier replay of this dead letter published (and its delete failed): within the duplicate
    window the broker keeps that one, so a replay with another payload must not claim success."""
    customer = new_customer_id()
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(order_created_payload(customer, total_cents=4200)))
    async with consuming(settings, engine, js):
        ack = await publish(js, order_created(customer, body=b"not JSON"))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))
    [letter] = await dead_letters(js, settings.order_events.consumer)
    earlier = f"replay.{letter.sequence}.{ORDERS_STREAM}.{ack.seq}"
    await js.publish("orders.created", b"an earlier replay", stream=ORDERS_STREAM, headers={"Nats-Msg-Id": earlier})

    refused = await orderflow(
        "dlq", "replay", str(letter.sequence), "--payload", str(fixed), "--nats-url", settings.nats_url
    )

    assert refused.exit_code == 1, refused.output
    assert "already replayed" in refused.output
    assert await dead_letters(js, settings.order_events.consumer) == [letter]  # kept, to show or purge


def replayed_sequence(result: Result) -> int:
    """The ORDERS sequence that `dlq replay` reports for the republished message."""
    match = re.search(r"stream ORDERS sequence (\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


async def poison_dead_letters(settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext, count: int) -> None:
    """`count` messages that are not JSON, dead-lettered at once by the test's consumer."""
    async with consuming(settings, engine, js):
        for _ in range(count):
            ack = await publish(js, order_created(new_customer_id(), body=b"not JSON"))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))


async def test_dlq_count_and_list_say_how_many_dead_letters_a_consumer_has(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    await poison_dead_letters(settings, engine, js, 3)
    consumer = settings.order_events.consumer
    nats = ("--nats-url", settings.nats_url)

    counted = await orderflow("dlq", "count", "--consumer", consumer, "--json", *nats)
    counted_text = await orderflow("dlq", "count", "--consumer", consumer, *nats)
    listed = await orderflow("dlq", "list", "--consumer", consumer, "--limit", "2", *nats)

    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.stdout) == {"total": 3, "subjects": {f"dlq.{consumer}.orders.created": 3}}
    assert counted_text.stdout.splitlines() == [
        f"dlq.{consumer}.orders.created 3",
        f"3 dead letter(s) of consumer {consumer}",
    ]
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0] == f"3 dead letter(s) of consumer {consumer}; showing 2"


async def test_dlq_replay_all_replays_each_dead_letter_of_a_consumer_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """Two events dead-lettered while the database was unreachable, and one poison message. After
    the fix, `replay --all` puts all three back: the events award once each; the poison fails
    again and is dead-lettered anew, and the same run does not replay it a second time."""
    customer = new_customer_id()
    events = [order_created(customer, total_cents=1000), order_created(customer, total_cents=2000)]
    nobody_listens = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", settings.loyalty_database)
    try:
        async with consuming(settings, nobody_listens, js):
            for event in events:
                ack = await publish(js, event)
            poison = await publish(js, order_created(customer, body=b"not JSON"))
            await eventually(lambda: acked_through(js, settings.order_events.consumer, max(ack.seq, poison.seq)))
    finally:
        await nobody_listens.dispose()
    before = await dead_letters(js, settings.order_events.consumer)
    assert sorted(letter.reason or "" for letter in before) == ["exhausted", "exhausted", "permanent"]

    async with consuming(settings, engine, js):
        replayed = await orderflow(
            "dlq", "replay", "--all", "--consumer", settings.order_events.consumer, "--nats-url", settings.nats_url
        )
        assert replayed.exit_code == 0, replayed.output
        last_replay = max(int(sequence) for sequence in re.findall(r"stream ORDERS sequence (\d+)", replayed.stdout))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, last_replay))

    assert replayed.stdout.splitlines()[-1] == "replayed 3 dead letter(s), 0 not replayable"
    awarded = await balance(engine, customer)
    assert (awarded.points, awarded.orders_awarded) == (30, 2)
    [again] = await dead_letters(js, settings.order_events.consumer)
    assert again.reason == "permanent"
    assert again.sequence > max(letter.sequence for letter in before)


async def test_dlq_purge_deletes_one_or_a_consumers_dead_letters_and_only_with_yes(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    await poison_dead_letters(settings, engine, js, 3)
    other = await js.publish(f"dlq.{settings.order_events.consumer}-other.orders.created", b"{}", stream="DEAD_LETTERS")
    first, *_ = await dead_letters(js, settings.order_events.consumer)
    nats = ("--nats-url", settings.nats_url)

    refused = await orderflow("dlq", "purge", "--consumer", settings.order_events.consumer, *nats)
    ambiguous = await orderflow("dlq", "purge", str(first.sequence), "--all", "--yes", *nats)
    assert (refused.exit_code, ambiguous.exit_code) == (2, 2)
    assert "--yes" in refused.stderr
    assert len(await dead_letters(js, settings.order_events.consumer)) == 3

    one = await orderflow("dlq", "purge", str(first.sequence), "--yes", *nats)
    assert one.exit_code == 0, one.output
    assert first.sequence not in [letter.sequence for letter in await dead_letters(js, settings.order_events.consumer)]

    rest = await orderflow("dlq", "purge", "--consumer", settings.order_events.consumer, "--yes", *nats)
    assert rest.exit_code == 0, rest.output
    assert rest.stdout.strip() == f"purged 2 dead letter(s) of consumer {settings.order_events.consumer}"
    assert await dead_letters(js, settings.order_events.consumer) == []
    assert (await get_dead_letter(js, other.seq)).sequence == other.seq  # another consumer's stays

    gone = await orderflow("dlq", "purge", str(other.seq), "--yes", *nats)
    missing = await orderflow("dlq", "purge", str(other.seq), "--yes", *nats)
    assert gone.exit_code == 0, gone.output
    assert missing.exit_code == 1
    assert f"no dead letter with sequence {other.seq}" in missing.stderr


async def test_dlq_purge_all_empties_the_dead_letter_stream(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext, infra: Infrastructure
) -> None:
    if infra.nats is None:
        pytest.skip("the NATS server is not ours: purging all of DEAD_LETTERS would delete others' dead letters")
    await poison_dead_letters(settings, engine, js, 2)

    purged = await orderflow("dlq", "purge", "--all", "--yes", "--nats-url", settings.nats_url)
    counted = await orderflow("dlq", "count", "--json", "--nats-url", settings.nats_url)

    assert purged.exit_code == 0, purged.output
    assert re.fullmatch(r"purged \d+ dead letter\(s\)", purged.stdout.strip())
    assert json.loads(counted.stdout) == {"total": 0, "subjects": {}}
