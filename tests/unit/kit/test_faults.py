"""The fault-flag switch: its syntax, its three sources (the environment, a file re-read when it
changes, and the bucket's spec as its watcher hands it over), the one way the API writes each value,
and what each injection point does and logs when its fault is on."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from nats.js.api import PubAck

from orderflow_contracts.cloudevents import NATS_MSG_ID
from orderflow_kit import faults
from orderflow_kit.failures import Failure, classify
from orderflow_kit.faults import (
    FAULTS_ENV,
    FAULTS_FILE_ENV,
    NO_FAULTS,
    FailFirst,
    Fault,
    FaultFlags,
    FaultSpecError,
    InjectedFailure,
    SecondPublish,
)


@pytest.fixture(autouse=True)
def no_fault_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell running the tests has set, each test starts with no faults."""
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    monkeypatch.delenv(FAULTS_FILE_ENV, raising=False)


def test_every_flag_parses_to_its_typed_value() -> None:
    flags = faults.parse(
        "relay_crash_after_publish, consumer_fail_first=3, publish_twice, inventory_delay_ms=1500,"
        "orders_crash_before_commit"
    )

    assert flags == FaultFlags(
        relay_crash_after_publish=True,
        consumer_fail_first=FailFirst(3),
        publish_twice=SecondPublish.NEW_MSG_ID,
        inventory_delay_ms=1500,
        orders_crash_before_commit=True,
    )


def test_nothing_set_means_no_faults() -> None:
    assert faults.parse("") == NO_FAULTS
    assert faults.current() is NO_FAULTS
    assert not any(NO_FAULTS.is_on(fault) for fault in Fault)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("publish_twice=same_msg_id", FaultFlags(publish_twice=SecondPublish.SAME_MSG_ID)),
        ("publish_twice=NEW_MSG_ID", FaultFlags(publish_twice=SecondPublish.NEW_MSG_ID)),
        ("publish_twice=off", NO_FAULTS),
        ("relay_crash_after_publish=on", FaultFlags(relay_crash_after_publish=True)),
        ("relay_crash_after_publish=false", NO_FAULTS),
        ("consumer_fail_first=loyalty-e2e:2", FaultFlags(consumer_fail_first=FailFirst(2, "loyalty-e2e"))),
        ("consumer_fail_first=0", NO_FAULTS),
        ("inventory_delay_ms=0", NO_FAULTS),
    ],
)
def test_values_select_a_variant_or_switch_a_flag_off(spec: str, expected: FaultFlags) -> None:
    assert faults.parse(spec) == expected


def test_a_file_may_hold_one_flag_per_line_with_comments() -> None:
    spec = "# break the relay\nrelay_crash_after_publish   # until healed\n\n  inventory_delay_ms = 20 \n"

    assert faults.parse(spec) == FaultFlags(relay_crash_after_publish=True, inventory_delay_ms=20)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("relay_crash", "unknown fault 'relay_crash'; known: relay_crash_after_publish, "),
        ("inventory_delay_ms", "inventory_delay_ms takes a whole number"),
        ("inventory_delay_ms=1.5", "inventory_delay_ms takes a whole number"),
        ("consumer_fail_first=-1", "consumer_fail_first takes a whole number"),
        ("publish_twice=thrice", "publish_twice takes no value, new_msg_id, same_msg_id or off"),
        ("orders_crash_before_commit=later", "orders_crash_before_commit takes no value, or on/off"),
    ],
)
def test_a_spec_that_does_not_parse_is_refused_with_the_reason(spec: str, complaint: str) -> None:
    with pytest.raises(FaultSpecError, match=complaint):
        faults.parse(spec)


def test_the_environment_switches_faults_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "publish_twice=same_msg_id")

    assert faults.current() == FaultFlags(publish_twice=SecondPublish.SAME_MSG_ID)


def test_a_bad_environment_spec_is_logged_and_applies_no_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "relay_crash_after_publish,inventory_delay_ms=soon")

    with structlog.testing.capture_logs() as logs:
        flags = faults.current()

    assert flags == NO_FAULTS
    assert {"event": "fault spec ignored", "log_level": "error", "source": FAULTS_ENV}.items() <= logs[0].items()


def test_the_file_is_read_again_when_it_changes_and_deleting_it_heals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    switch = tmp_path / "faults"
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))
    assert faults.current() == NO_FAULTS  # no file yet

    switch.write_text("inventory_delay_ms=1500\n")
    assert faults.current() == FaultFlags(inventory_delay_ms=1500)

    switch.write_text("inventory_delay_ms=20\n")
    assert faults.current() == FaultFlags(inventory_delay_ms=20)

    switch.unlink()
    assert faults.current() == NO_FAULTS


def test_the_file_wins_over_the_environment_flag_by_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    switch = tmp_path / "faults"
    switch.write_text("relay_crash_after_publish=off\ninventory_delay_ms=5\n")
    monkeypatch.setenv(FAULTS_ENV, "relay_crash_after_publish,publish_twice")
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))

    assert faults.current() == FaultFlags(publish_twice=SecondPublish.NEW_MSG_ID, inventory_delay_ms=5)


def test_a_bad_file_applies_no_fault_until_it_is_fixed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    switch = tmp_path / "faults"
    switch.write_text("inventory_delay_ms=1500\nrelay_crash_after_publsh\n")  # a typo
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))

    with structlog.testing.capture_logs() as logs:
        assert faults.current() == NO_FAULTS
    assert [entry["source"] for entry in logs if entry["event"] == "fault spec ignored"] == [str(switch)]

    switch.write_text("inventory_delay_ms=1500\nrelay_crash_after_publish\n")
    assert faults.current() == FaultFlags(relay_crash_after_publish=True, inventory_delay_ms=1500)


def test_changes_of_the_faults_in_force_are_logged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    switch = tmp_path / "faults"
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))
    with structlog.testing.capture_logs() as logs:
        switch.write_text("consumer_fail_first=loyalty:2")
        faults.current()
        faults.current()
        switch.unlink()
        faults.current()

    changes = [entry["faults"] for entry in logs if entry["event"] == "fault flags changed"]
    assert changes == [{"consumer_fail_first": "loyalty:2"}, {}]


def test_a_consumer_fails_the_first_n_deliveries_of_each_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "consumer_fail_first=2")

    with structlog.testing.capture_logs() as logs:
        failing = [faults.should_fail_attempt("loyalty", delivery) for delivery in (1, 2, 3, 4)]

    assert failing == [True, True, False, False]
    fired = [entry for entry in logs if entry["event"] == "fault injected"]
    assert [(entry["fault"], entry["delivery"], entry["log_level"]) for entry in fired] == [
        ("consumer_fail_first", 1, "warning"),
        ("consumer_fail_first", 2, "warning"),
    ]


def test_a_consumer_named_in_the_flag_fails_and_the_others_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "consumer_fail_first=loyalty:3")

    assert faults.should_fail_attempt("loyalty", 1)
    assert not faults.should_fail_attempt("inventory", 1)


def test_an_injected_consumer_failure_is_classified_as_transient() -> None:
    assert classify(InjectedFailure("consumer_fail_first: delivery 1 of 3")) is Failure.DEPENDENCY


class RecordingBroker:
    """Stands in for `js.publish` (bound to one event): records the headers of each publish."""

    def __init__(self) -> None:
        self.published: list[dict[str, str]] = []

    async def publish(self, headers: dict[str, str]) -> PubAck:
        self.published.append(headers)
        return PubAck(stream="ORDERS", seq=len(self.published), duplicate=False)


@pytest.mark.parametrize(
    ("flag", "second_msg_id"), [("publish_twice", "twice.event-1"), ("publish_twice=same_msg_id", "event-1")]
)
async def test_publish_twice_publishes_a_second_copy_with_a_new_or_the_same_msg_id(
    monkeypatch: pytest.MonkeyPatch, flag: str, second_msg_id: str
) -> None:
    monkeypatch.setenv(FAULTS_ENV, flag)
    broker = RecordingBroker()
    headers = {NATS_MSG_ID: "event-1", "ce-id": "event-1"}

    with structlog.testing.capture_logs() as logs:
        await faults.publish_twice(broker.publish, headers)

    assert broker.published == [{NATS_MSG_ID: second_msg_id, "ce-id": "event-1"}]
    assert headers == {NATS_MSG_ID: "event-1", "ce-id": "event-1"}  # the caller's headers are left alone
    [fired] = [entry for entry in logs if entry["event"] == "fault injected"]
    assert (fired["fault"], fired["msg_id"], fired["stream_seq"]) == ("publish_twice", second_msg_id, 1)


async def test_injection_points_do_nothing_when_no_fault_is_on() -> None:
    broker = RecordingBroker()
    started = time.monotonic()

    faults.crash_point(Fault.RELAY_CRASH_AFTER_PUBLISH)
    await faults.publish_twice(broker.publish, {NATS_MSG_ID: "event-1"})
    await faults.inventory_delay()

    assert not faults.should_fail_attempt("loyalty", 1)
    assert broker.published == []
    assert time.monotonic() - started < 0.05


async def test_inventory_delay_holds_the_answer_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULTS_ENV, "inventory_delay_ms=200")
    started = time.monotonic()

    await faults.inventory_delay()

    assert time.monotonic() - started >= 0.2


def test_a_crash_point_sigkills_its_process_after_logging_why() -> None:
    """In a child process: the test's own process must survive."""
    crash = (
        "from orderflow_kit import faults; faults.crash_point(faults.Fault.ORDERS_CRASH_BEFORE_COMMIT); print('alive')"
    )
    env = {**os.environ, FAULTS_ENV: "orders_crash_before_commit"}

    child = subprocess.run([sys.executable, "-c", crash], env=env, capture_output=True, text=True, timeout=30)

    assert child.returncode == -signal.SIGKILL
    assert "alive" not in child.stdout
    assert "fault injected" in child.stdout + child.stderr
    assert "orders_crash_before_commit" in child.stdout + child.stderr


@pytest.fixture
def no_bucket_flags() -> Iterator[None]:
    yield
    faults.use_bucket_spec("", source="test")


@pytest.mark.usefixtures("no_bucket_flags")
def test_the_bucket_wins_over_the_file_and_the_environment_flag_by_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    switch = tmp_path / "faults"
    switch.write_text("inventory_delay_ms=5\n")
    monkeypatch.setenv(FAULTS_ENV, "relay_crash_after_publish,publish_twice")
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))

    bucket = "publish_twice=same_msg_id\ninventory_delay_ms=7\nrelay_crash_after_publish=off\n"
    faults.use_bucket_spec(bucket, source="bucket B")

    assert faults.current() == FaultFlags(publish_twice=SecondPublish.SAME_MSG_ID, inventory_delay_ms=7)


@pytest.mark.usefixtures("no_bucket_flags")
def test_the_bucket_alone_switches_faults_on_logs_the_change_at_once_and_an_empty_spec_heals() -> None:
    with structlog.testing.capture_logs() as logs:
        faults.use_bucket_spec("inventory_delay_ms=1500", source="bucket B")
        assert faults.current() == FaultFlags(inventory_delay_ms=1500)
        faults.use_bucket_spec("", source="bucket B")
        assert faults.current() is NO_FAULTS

    changes = [entry["faults"] for entry in logs if entry["event"] == "fault flags changed"]
    assert changes == [{"inventory_delay_ms": "1500"}, {}]


@pytest.mark.usefixtures("no_bucket_flags")
def test_a_bad_bucket_spec_is_logged_and_applies_no_fault() -> None:
    faults.use_bucket_spec("inventory_delay_ms=1500", source="bucket B")

    with structlog.testing.capture_logs() as logs:
        faults.use_bucket_spec("inventory_delay_ms=1500\nrelay_crash_after_publsh", source="bucket B")

    assert faults.current() == NO_FAULTS
    assert [entry["source"] for entry in logs if entry["event"] == "fault spec ignored"] == ["bucket B"]


def test_canonical_writes_each_value_one_way_and_spec_of_parses_back_to_it() -> None:
    values = {
        "relay_crash_after_publish": "",
        "orders_crash_before_commit": "no",
        "publish_twice": " SAME_MSG_ID ",
        "consumer_fail_first": "loyalty-e2e-1:2",
        "inventory_delay_ms": "0",
    }

    written = faults.canonical(values)

    assert written == {
        "relay_crash_after_publish": "on",
        "orders_crash_before_commit": "off",
        "publish_twice": "same_msg_id",
        "consumer_fail_first": "loyalty-e2e-1:2",
        "inventory_delay_ms": "0",
    }
    assert faults.flag_values(faults.spec_of(values)) == written
    assert faults.parse(faults.spec_of(values)) == FaultFlags(
        relay_crash_after_publish=True,
        publish_twice=SecondPublish.SAME_MSG_ID,
        consumer_fail_first=FailFirst(2, "loyalty-e2e-1"),
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("relay_crash", "on", "unknown fault 'relay_crash'"),
        ("inventory_delay_ms=5,publish_twice", "", "unknown fault"),
        ("inventory_delay_ms", "5,relay_crash_after_publish", "takes a whole number"),
        ("inventory_delay_ms", "9999999999", "takes a whole number"),
        ("publish_twice", "new_msg_id\nrelay_crash_after_publish", "publish_twice takes"),
        ("consumer_fail_first", "loyalty,relay_crash_after_publish:2", "names no consumer"),
        ("consumer_fail_first", "loyalty:2#", "takes a whole number"),
    ],
)
def test_canonical_refuses_what_would_not_survive_a_spec_naming_the_flag(name: str, value: str, message: str) -> None:
    with pytest.raises(faults.FlagError, match=message) as refused:
        faults.spec_of({"inventory_delay_ms": "10", name: value})

    assert refused.value.name == name


@given(
    st.dictionaries(
        st.sampled_from(list(Fault)).map(str) | st.text(max_size=12),
        st.text(max_size=24) | st.integers(min_value=-5, max_value=10**10).map(str),
        max_size=6,
    )
)
def test_a_set_of_flags_is_refused_naming_a_flag_or_written_as_a_spec_that_parses_back_to_it(
    values: dict[str, str],
) -> None:
    """What PUT /v1/admin/faults relies on, whatever a client sends (the API is not fuzzed with
    valid sets: they would break the pipeline under attack)."""
    refused: faults.FlagError | None = None
    try:
        written = faults.canonical(values)
    except faults.FlagError as error:
        refused = error
    if refused is not None:
        assert refused.name in values
    else:
        assert faults.flag_values(faults.spec_of(values)) == written
