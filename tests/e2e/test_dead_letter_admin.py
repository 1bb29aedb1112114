"""Dead letters over HTTP for operators, through the real gateway in front of the real pipeline and
NATS: a malformed event is dead-lettered, listed and shown, replayed with a fixed payload, and its
points are awarded once; paging; who may; what is refused writes nothing."""

import json
import uuid
from typing import Any

import httpx
import nats
import pytest

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDER_CREATED_SUBJECT, ORDERS_STREAM
from tests.e2e.support import loyalty, new_customer, publish
from tests.support.events import order_created
from tests.support.jetstream import acked_through, jetstream, publish_raw_headers
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import ADMIN_ID, as_admin, as_customer

pytestmark = pytest.mark.e2e

DEAD_LETTERS = "/v1/admin/dead-letters"


async def all_dead_letters(api: httpx.AsyncClient, consumer: str) -> list[dict[str, Any]]:
    """Every dead letter of `consumer`, page after page."""
    letters: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        response = await api.get(
            DEAD_LETTERS, params={"consumer": consumer, "after": after, "page_size": 100}, headers=as_admin()
        )
        assert response.status_code == 200, response.text
        page = response.json()
        letters.extend(page["dead_letters"])
        after = page["next_after"]
    return letters


def access_line(pipeline: Pipeline, request_id: str) -> dict[str, Any] | None:
    """The gateway's access line for request `request_id`, once it is written."""
    for line in (pipeline.log_dir / "gateway.log").read_text().splitlines():
        _, _, logged = line.partition("| ")
        if request_id in logged and logged.startswith("{"):
            entry: dict[str, Any] = json.loads(logged)
            if entry.get("event") == "request":
                return entry
    return None


async def dead_letter_of(api: httpx.AsyncClient, consumer: str, event: CloudEvent) -> dict[str, Any]:
    """`consumer`'s dead letter of `event`, once there is one."""
    letters = await eventually(
        lambda: all_dead_letters(api, consumer),
        lambda letters: any(letter["ce_id"] == event.id for letter in letters),
        what=f"{consumer}'s dead letter of {event.id}",
    )
    return next(letter for letter in letters if letter["ce_id"] == event.id)


async def dead_lettered(pipeline: Pipeline, customer: str, total_cents: int) -> CloudEvent:
    """Publish an OrderCreated whose body is not JSON; returns the event with its valid body."""
    event = order_created(customer, total_cents=total_cents)
    await publish(pipeline.nats_url, event.to_headers(), b'{"order_id": "not even json')
    return event


async def test_a_dead_letter_is_listed_shown_replayed_with_a_fix_and_its_points_awarded_once(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()
    broken = await dead_lettered(pipeline, customer, total_cents=1999)

    letter = await dead_letter_of(api, pipeline.consumer, broken)
    shown = await api.get(f"{DEAD_LETTERS}/{letter['sequence']}", headers=as_admin())
    request_id = f"replay-{uuid.uuid4().hex}"
    replayed = await api.post(
        f"{DEAD_LETTERS}/{letter['sequence']}/replay",
        json={"payload": json.loads(broken.data)},
        headers={**as_admin(), "X-Request-Id": request_id},
    )
    balance = await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="replay")

    assert letter["subject"] == f"dlq.{pipeline.consumer}.{ORDER_CREATED_SUBJECT}"
    assert letter["consumer"] == pipeline.consumer
    assert letter["original_subject"] == ORDER_CREATED_SUBJECT
    assert letter["reason"] == "permanent"
    assert letter["error_class"]
    assert letter["error"]
    assert shown.status_code == 200, shown.text
    assert {key: shown.json()[key] for key in letter} == letter
    assert shown.json()["headers"]["ce-id"] == broken.id
    assert shown.json()["headers"]["dlq-reason"] == "permanent"
    assert shown.json()["body_text"] == '{"order_id": "not even json'
    assert shown.json()["body"] is None
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["sequence"] == letter["sequence"]
    assert replayed.json()["subject"] == ORDER_CREATED_SUBJECT
    assert replayed.json()["stream"] == ORDERS_STREAM
    assert replayed.json()["ce_id"] == broken.id
    assert replayed.json()["msg_id"] != broken.id
    assert balance == {"customer_id": customer, "points": 19, "orders_awarded": 1}
    audit = await eventually(lambda: access_line(pipeline, request_id), what="the replay's access line")
    assert audit is not None
    assert {key: audit[key] for key in ("sub", "dead_letter", "ce_id", "fixed_payload", "replayed_as", "status")} == {
        "sub": ADMIN_ID,
        "dead_letter": letter["sequence"],
        "ce_id": broken.id,
        "fixed_payload": True,
        "replayed_as": replayed.json()["stream_sequence"],
        "status": 200,
    }

    # Replayed once and deleted: the dead letter is gone, and replaying it again does nothing.
    gone = await api.get(f"{DEAD_LETTERS}/{letter['sequence']}", headers=as_admin())
    again = await api.post(f"{DEAD_LETTERS}/{letter['sequence']}/replay", headers=as_admin())
    assert (gone.status_code, gone.json()["code"]) == (404, "DEAD_LETTER_NOT_FOUND")
    assert (again.status_code, again.json()["code"]) == (404, "DEAD_LETTER_NOT_FOUND")

    # Inventory gave up on the same event: its dead letter replayed with the same fix is the same
    # event (same ce-id) to loyalty, which awards it no second time.
    inventorys = await dead_letter_of(api, pipeline.inventory_consumer, broken)
    second = await api.post(
        f"{DEAD_LETTERS}/{inventorys['sequence']}/replay", json={"payload": json.loads(broken.data)}, headers=as_admin()
    )
    assert second.status_code == 200, second.text
    replayed_at = second.json()["stream_sequence"]
    async with jetstream(pipeline.nats_url) as js:
        await eventually(
            lambda: acked_through(js, pipeline.consumer, replayed_at), what="loyalty consumed the second replay"
        )
    assert await loyalty(api, customer) == {"customer_id": customer, "points": 19, "orders_awarded": 1}


async def test_a_replay_of_the_stored_body_needs_no_request_body(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    broken = await dead_lettered(pipeline, new_customer(), total_cents=100)
    letter = await dead_letter_of(api, pipeline.consumer, broken)

    replayed = await api.post(f"{DEAD_LETTERS}/{letter['sequence']}/replay", headers=as_admin())

    assert replayed.status_code == 200, replayed.text
    # Still not JSON: loyalty dead-letters it again, under a new sequence.
    letters = await eventually(
        lambda: all_dead_letters(api, pipeline.consumer),
        lambda letters: any(
            other["ce_id"] == broken.id and other["sequence"] > letter["sequence"] for other in letters
        ),
        what="the replayed event dead-lettered anew",
    )
    assert letter["sequence"] not in {other["sequence"] for other in letters}


async def test_dead_letters_come_a_page_at_a_time_with_how_many_there_are(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    for _ in range(3):
        await dead_letter_of(api, pipeline.consumer, await dead_lettered(pipeline, new_customer(), total_cents=100))
    everything = await all_dead_letters(api, pipeline.consumer)

    pages: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        params: dict[str, str | int] = {"consumer": pipeline.consumer, "after": after, "page_size": 2}
        response = await api.get(DEAD_LETTERS, params=params, headers=as_admin())
        pages.append(response.json())
        after = pages[-1]["next_after"]

    assert len(everything) >= 3
    assert [letter for page in pages for letter in page["dead_letters"]] == everything
    assert all(len(page["dead_letters"]) == 2 for page in pages[:-1])
    assert {page["total"] for page in pages} == {len(everything)}
    assert pages[0]["subjects"] == {f"dlq.{pipeline.consumer}.{ORDER_CREATED_SUBJECT}": len(everything)}
    sequences = [letter["sequence"] for letter in everything]
    assert sequences == sorted(sequences)


async def test_only_admins_may(api: httpx.AsyncClient) -> None:
    customer = as_customer(new_customer())
    requests = [("GET", DEAD_LETTERS), ("GET", f"{DEAD_LETTERS}/1"), ("POST", f"{DEAD_LETTERS}/1/replay")]
    for method, path in requests:
        as_a_customer = await api.request(method, path, headers=customer)
        anonymous = await api.request(method, path)

        assert (as_a_customer.status_code, as_a_customer.json()["code"]) == (403, "INSUFFICIENT_SCOPE"), path
        assert 'error="insufficient_scope", scope="admin"' in as_a_customer.headers["www-authenticate"]
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTHENTICATION_REQUIRED"), path


async def orders_end(nats_url: str) -> int:
    """The last sequence in ORDERS: a replay would publish after it."""
    connection = await nats.connect(nats_url)
    try:
        last: int = (await connection.jetstream().stream_info(ORDERS_STREAM)).state.last_seq
        return last
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{}", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"payload": ', "application/json", 400, "MALFORMED_JSON"),
        (b'{"payload": {}, "extra": 1}', "application/json", 422, "VALIDATION_FAILED"),
        (b'{"payload": "not an object"}', "application/json", 422, "VALIDATION_FAILED"),
    ],
)
async def test_a_refused_replay_publishes_nothing_and_keeps_the_dead_letter(
    api: httpx.AsyncClient, pipeline: Pipeline, body: bytes, content_type: str, status: int, code: str
) -> None:
    letter = await dead_letter_of(api, pipeline.consumer, await dead_lettered(pipeline, new_customer(), 100))
    before = await orders_end(pipeline.nats_url)

    refused = await api.post(
        f"{DEAD_LETTERS}/{letter['sequence']}/replay",
        content=body,
        headers={**as_admin(), "content-type": content_type},
    )

    assert (refused.status_code, refused.json()["code"]) == (status, code)
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await api.get(f"{DEAD_LETTERS}/{letter['sequence']}", headers=as_admin())).status_code == 200
    assert await orders_end(pipeline.nats_url) == before


async def test_unknown_sequences_and_bad_parameters_are_problems(api: httpx.AsyncClient) -> None:
    answers = {
        "show unknown": await api.get(f"{DEAD_LETTERS}/{2**63}", headers=as_admin()),
        "replay unknown": await api.post(f"{DEAD_LETTERS}/{2**63}/replay", headers=as_admin()),
        "sequence 0": await api.get(f"{DEAD_LETTERS}/0", headers=as_admin()),
        "not a sequence": await api.get(f"{DEAD_LETTERS}/latest", headers=as_admin()),
        "consumer with a wildcard": await api.get(DEAD_LETTERS, params={"consumer": "a.>"}, headers=as_admin()),
        "page too large": await api.get(DEAD_LETTERS, params={"page_size": 1000}, headers=as_admin()),
    }

    codes = {name: (response.status_code, response.json()["code"]) for name, response in answers.items()}
    assert codes == {
        "show unknown": (404, "DEAD_LETTER_NOT_FOUND"),
        "replay unknown": (404, "DEAD_LETTER_NOT_FOUND"),
        "sequence 0": (422, "VALIDATION_FAILED"),
        "not a sequence": (422, "VALIDATION_FAILED"),
        "consumer with a wildcard": (422, "VALIDATION_FAILED"),
        "page too large": (422, "VALIDATION_FAILED"),
    }


async def test_a_dead_letter_that_does_not_say_where_it_came_from_is_shown_but_not_replayed(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    sequence = await publish(pipeline.nats_url, {"ce-id": "hand-made"}, b"{}", subject="dlq.e2e-hand.orders.created")
    try:
        shown = await api.get(f"{DEAD_LETTERS}/{sequence}", headers=as_admin())
        refused = await api.post(f"{DEAD_LETTERS}/{sequence}/replay", headers=as_admin())

        assert shown.status_code == 200, shown.text
        assert shown.json()["body"] == {}
        assert (refused.status_code, refused.json()["code"]) == (409, "DEAD_LETTER_NOT_REPLAYABLE")
        assert (await api.get(f"{DEAD_LETTERS}/{sequence}", headers=as_admin())).status_code == 200
    finally:
        connection = await nats.connect(pipeline.nats_url)
        await connection.jetstream().delete_msg(DEAD_LETTER_STREAM, sequence)
        await connection.close()


# --- header names nats-py receives but will not publish ------------------------------------------


def header_lines(event: CloudEvent, *extra: str) -> list[str]:
    return [f"{name}: {value}" for name, value in event.to_headers().items()] + list(extra)


async def test_an_event_whose_header_name_nats_py_will_not_publish_is_dead_lettered_by_both_and_replayed(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """`x(y): 1` arrives (nats-py reads any name) but cannot be copied into a dead letter as it is
    (nats-py publishes only RFC 7230 tokens): it is kept in `unpublishable-headers`, once."""
    customer = new_customer()
    event = order_created(customer, total_cents=700)
    await publish_raw_headers(
        pipeline.nats_url, ORDER_CREATED_SUBJECT, header_lines(event, "x(y): 1"), b'{"order_id": "not even json'
    )

    for consumer in (pipeline.consumer, pipeline.inventory_consumer):
        letter = await dead_letter_of(api, consumer, event)
        shown = (await api.get(f"{DEAD_LETTERS}/{letter['sequence']}", headers=as_admin())).json()
        assert (letter["reason"], letter["deliveries"]) == ("permanent", "1"), consumer
        assert json.loads(shown["headers"]["unpublishable-headers"]) == {"x(y)": "1"}, consumer
        assert shown["headers"]["ce-id"] == event.id

    loyaltys = await dead_letter_of(api, pipeline.consumer, event)
    fixed = await api.post(
        f"{DEAD_LETTERS}/{loyaltys['sequence']}/replay", json={"payload": json.loads(event.data)}, headers=as_admin()
    )
    inventorys = await dead_letter_of(api, pipeline.inventory_consumer, event)
    as_stored = await api.post(f"{DEAD_LETTERS}/{inventorys['sequence']}/replay", headers=as_admin())

    assert fixed.status_code == 200, fixed.text
    assert as_stored.status_code == 200, as_stored.text
    balance = await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="the fix")
    assert balance == {"customer_id": customer, "points": 7, "orders_awarded": 1}


async def test_a_valid_event_with_a_header_name_nats_py_will_not_publish_is_processed(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """Loyalty awards it; inventory, which never reserved its order, dead-letters it (NoReservation)
    with the header kept."""
    customer = new_customer()
    event = order_created(customer, total_cents=300)
    await publish_raw_headers(pipeline.nats_url, ORDER_CREATED_SUBJECT, header_lines(event, "x(y): 1"), event.data)

    balance = await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="the award")
    letter = await dead_letter_of(api, pipeline.inventory_consumer, event)
    shown = (await api.get(f"{DEAD_LETTERS}/{letter['sequence']}", headers=as_admin())).json()

    assert balance == {"customer_id": customer, "points": 3, "orders_awarded": 1}
    assert (letter["reason"], letter["error_class"]) == ("permanent", "NoReservation")
    assert json.loads(shown["headers"]["unpublishable-headers"]) == {"x(y)": "1"}


async def test_a_dead_letter_holding_a_header_name_nats_py_will_not_publish_replays(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """One stored as it is (by hand, or before the name was kept apart) replays: not a 500."""
    customer = new_customer()
    event = order_created(customer, total_cents=500)
    where_from = ["dlq-consumer: e2e-hand", "dlq-subject: orders.created", "dlq-stream: ORDERS"]
    lines = [line for line in header_lines(event, "x(y): 1", *where_from) if not line.startswith("Nats-Msg-Id")]
    await publish_raw_headers(pipeline.nats_url, "dlq.e2e-hand.orders.created", lines, event.data)
    letter = await dead_letter_of(api, "e2e-hand", event)

    replayed = await api.post(f"{DEAD_LETTERS}/{letter['sequence']}/replay", headers=as_admin())

    assert replayed.status_code == 200, replayed.text
    balance = await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="the replay")
    assert balance == {"customer_id": customer, "points": 5, "orders_awarded": 1}
