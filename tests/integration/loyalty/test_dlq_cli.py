"""`orderflow dlq list / show / replay` against the real broker, through the real CLI app."""

import asyncio
import json
import re
from pathlib import Path

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from loyalty.settings import LoyaltySettings
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit.cli import app
from tests.integration.loyalty.helpers import (
    acked_through,
    balance,
    consuming,
    dead_letters,
    new_customer_id,
    order_created,
    order_created_payload,
    publish,
    rows,
)
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
        await eventually(lambda: acked_through(js, settings.loyalty_consumer, ack.seq))
    [letter] = await dead_letters(js, settings.loyalty_consumer)
    nats = ("--nats-url", settings.nats_url)

    listed = await orderflow("dlq", "list", "--consumer", settings.loyalty_consumer, "--json", *nats)
    table = await orderflow("dlq", "list", "--consumer", settings.loyalty_consumer, *nats)
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


async def test_dlq_show_and_replay_of_an_unknown_sequence_exit_1_with_a_message(settings: LoyaltySettings) -> None:
    for command in ("show", "replay"):
        result = await orderflow("dlq", command, "999999999", "--nats-url", settings.nats_url)

        assert result.exit_code == 1
        assert "no dead letter with sequence 999999999" in result.stderr
        assert "Traceback" not in result.output


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
        await eventually(lambda: acked_through(js, settings.loyalty_consumer, again.seq))
        first, second = await dead_letters(js, settings.loyalty_consumer)

        replayed = await orderflow(
            "dlq", "replay", str(first.sequence), "--payload", str(fixed), "--nats-url", settings.nats_url
        )
        assert replayed.exit_code == 0, replayed.output
        first_replay = replayed_sequence(replayed)
        await eventually(lambda: acked_through(js, settings.loyalty_consumer, first_replay))
        assert (await balance(engine, customer)).points == 42

        replayed_again = await orderflow(
            "dlq", "replay", str(second.sequence), "--payload", str(fixed), "--nats-url", settings.nats_url
        )
        assert replayed_again.exit_code == 0, replayed_again.output
        await eventually(lambda: acked_through(js, settings.loyalty_consumer, replayed_sequence(replayed_again)))

    awarded = await balance(engine, customer)
    assert (awarded.points, awarded.orders_awarded) == (42, 1)
    assert await rows(engine, "ledger", broken.id) == 1
    assert await dead_letters(js, settings.loyalty_consumer) == []  # replayed ones are deleted
    republished = await js.get_msg(ORDERS_STREAM, first_replay)
    assert republished.headers is not None
    assert republished.headers["ce-id"] == broken.id  # the same event for the dedupe table
    assert republished.headers["Nats-Msg-Id"] not in (broken.id, f"{broken.id}-again")  # new for the broker
    assert republished.data == fixed.read_bytes()


def replayed_sequence(result: Result) -> int:
    """The ORDERS sequence that `dlq replay` reports for the republished message."""
    match = re.search(r"stream ORDERS sequence (\d+)", result.stdout)
    assert match, result.stdout
    return int(match.group(1))
