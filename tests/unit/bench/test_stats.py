"""The bench's arithmetic (orderflow_bench.stats): latency percentiles, and CPU per order from two
samples of each process's cumulative CPU time."""

import pytest

from orderflow_bench.measured import LOAD_GENERATOR
from orderflow_bench.stats import CpuSample, CpuUse, Percentiles, cpu_ms_per, cpu_use, percentiles_ms, total_ms


def test_percentiles_are_in_milliseconds_interpolated_between_samples() -> None:
    seconds = [n / 1000 for n in range(1, 101)]  # 1 ms .. 100 ms

    assert percentiles_ms(seconds) == Percentiles(p50=50.5, p90=90.1, p99=99.01, max=100.0, count=100)


def test_a_single_sample_is_every_percentile() -> None:
    assert percentiles_ms([0.25]) == Percentiles(p50=250.0, p90=250.0, p99=250.0, max=250.0, count=1)


def test_no_samples_have_no_percentiles() -> None:
    assert percentiles_ms([]) is None


def test_cpu_per_order_is_each_process_delta_over_the_orders() -> None:
    before = {"orders": 10.0, "postgres": 100.0, LOAD_GENERATOR: 1.0}
    after = {"orders": 12.0, "postgres": 101.0, LOAD_GENERATOR: 1.5}

    per_order = cpu_ms_per(before, after, 500)

    assert per_order == pytest.approx({"orders": 4.0, "postgres": 2.0, LOAD_GENERATOR: 1.0})


def test_a_process_gone_before_the_second_sample_is_left_out() -> None:
    assert cpu_ms_per({"orders": 1.0, "loyalty": 1.0}, {"orders": 2.0}, 1000) == {"orders": 1.0}


def test_cpu_per_second_is_the_delta_over_the_seconds() -> None:
    assert cpu_ms_per({"nats": 3.0}, {"nats": 3.05}, 2.5) == pytest.approx({"nats": 20.0})


def test_without_orders_there_is_no_cpu_per_order() -> None:
    assert cpu_ms_per({"orders": 1.0}, {"orders": 2.0}, 0) == {}


def test_the_total_leaves_the_load_generator_out() -> None:
    assert total_ms({"gateway": 2.0, "orders": 3.5, LOAD_GENERATOR: 10.0}, excluding=LOAD_GENERATOR) == 5.5


def test_cpu_use_says_how_much_of_the_machine_the_pipeline_had() -> None:
    before = CpuSample(
        {"orders": 10.0, "postgres": 5.0, LOAD_GENERATOR: 1.0},
        machine=100.0,
        at=50.0,
        switches={"orders": 1000, "postgres": 500, LOAD_GENERATOR: 10},
    )
    # 10 s: orders busy 6 s, postgres 2 s, the load generator 1 s, the machine 18 s of its cores.
    after = CpuSample(
        {"orders": 16.0, "postgres": 7.0, LOAD_GENERATOR: 2.0},
        machine=118.0,
        at=60.0,
        switches={"orders": 31000, "postgres": 11500, LOAD_GENERATOR: 2010},
    )

    use = cpu_use(before, after, 1000, load_generator=LOAD_GENERATOR)

    assert use == CpuUse(
        per_order={"orders": 6.0, "postgres": 2.0, LOAD_GENERATOR: 1.0},
        per_order_total=8.0,
        pipeline_cores=0.8,
        other_processes_cores=0.9,
        switches_per_order={"orders": 30.0, "postgres": 11.0, LOAD_GENERATOR: 2.0},
    )
