"""The pause before a restart: exponential backoff while a service keeps dying, capped, and
forgotten once a run has been stable."""

from orderflow_devstack.supervision import RestartPolicy, describe_returncode

POLICY = RestartPolicy(first_delay=0.5, max_delay=30.0, stable_after=10.0)


def delays_for(uptimes: list[float], policy: RestartPolicy = POLICY) -> list[float]:
    """The pauses a service gets when its runs last `uptimes` seconds, one death after another."""
    delays: list[float] = []
    previous: float | None = None
    for uptime in uptimes:
        previous = policy.next_delay(previous, uptime)
        delays.append(previous)
    return delays


def test_the_first_death_waits_the_first_delay() -> None:
    assert POLICY.next_delay(None, uptime=0.1) == 0.5


def test_the_pause_doubles_while_the_service_keeps_dying_quickly() -> None:
    assert delays_for([0.1] * 6) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_the_pause_never_exceeds_the_maximum() -> None:
    assert delays_for([0.1] * 10)[-4:] == [30.0, 30.0, 30.0, 30.0]


def test_a_run_that_lasted_starts_the_backoff_over() -> None:
    assert delays_for([0.1, 0.1, 0.1, 10.0, 0.1]) == [0.5, 1.0, 2.0, 0.5, 1.0]


def test_a_run_just_short_of_stable_still_counts_as_a_quick_death() -> None:
    assert delays_for([0.1, 9.9]) == [0.5, 1.0]


def test_the_defaults_are_those_documented() -> None:
    assert RestartPolicy() == RestartPolicy(first_delay=0.5, max_delay=30.0, stable_after=10.0)


def test_an_exit_is_described_by_its_code_or_its_signal() -> None:
    assert describe_returncode(0) == "exited with code 0"
    assert describe_returncode(1) == "exited with code 1"
    assert describe_returncode(-9) == "killed by SIGKILL"
    assert describe_returncode(-15) == "killed by SIGTERM"
