"""orderflow_kit.tracing's set-up, in a fresh process each (a tracer provider is installed once
per process): OTLP over HTTP/protobuf and over gRPC reach a receiver as OTEL_EXPORTER_OTLP_PROTOCOL
says, the sampler is the one OTEL_TRACES_SAMPLER names, and without an endpoint nothing at all
is installed."""

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping

import pytest

from orderflow_bench.otlp_receiver import OtlpReceiver
from tests.support.polling import eventually

# Makes one span with a child, and a log line inside it; prints whether tracing was configured.
_ONE_TRACE = textwrap.dedent(
    """
    import structlog
    from opentelemetry import trace
    from orderflow_kit import tracing
    from orderflow_kit.logging import configure_logging

    configure_logging("probe", "json")
    print("configured" if tracing.configure_tracing("probe") else "not configured", flush=True)
    print(type(trace.get_tracer_provider()).__name__, flush=True)
    with tracing.span("outer"):
        with tracing.span("inner"):
            structlog.get_logger().info("inside")
    tracing.shutdown_tracing()
    """
)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def _environment(env: Mapping[str, str]) -> dict[str, str]:
    return {**{name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}, **env}


def _run(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ONE_TRACE],
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _start(env: Mapping[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", _ONE_TRACE]
    return subprocess.Popen(command, env=_environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_spans_reach_the_receiver_over_the_configured_protocol(protocol: str) -> None:
    receiver = OtlpReceiver(serve_grpc=protocol == "grpc")
    # Started before the receiver's gRPC server runs (see otlp_receiver); its exporter retries
    # until the receiver answers.
    probe = _start(receiver.environment(protocol))
    with receiver:
        stdout, stderr = probe.communicate(timeout=60)
        assert probe.returncode == 0, stderr
        done = subprocess.CompletedProcess(probe.args, 0, stdout, stderr)
        await _check_one_trace(receiver, done)


async def _check_one_trace(receiver: OtlpReceiver, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.splitlines()[0] == "configured"
    spans = await eventually(receiver.spans, lambda spans: len(spans) == 2, what="both spans")
    outer, inner = sorted(spans, key=lambda span: span.name != "outer")
    assert (outer.name, inner.name) == ("outer", "inner")
    assert inner.trace_id == outer.trace_id
    assert inner.parent_span_id == outer.span_id
    assert {span.service for span in spans} == {"probe"}
    # The log line inside the inner span names it.
    assert f'"trace_id":"{inner.trace_id}"' in done.stderr
    assert f'"span_id":"{inner.span_id}"' in done.stderr


def test_without_an_endpoint_nothing_is_installed() -> None:
    done = _run({})

    assert done.stdout.splitlines() == ["not configured", "ProxyTracerProvider"]
    assert "trace_id" not in done.stderr


async def test_the_sampler_comes_from_the_standard_variables(receiver: OtlpReceiver) -> None:
    _run({**receiver.environment(), "OTEL_TRACES_SAMPLER": "always_off"})
    _run({**receiver.environment(), "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.0"})

    # The first process sampled nothing; the second everything (its export is the only one).
    spans = await eventually(receiver.spans, lambda spans: len(spans) >= 2, what="the sampled trace")
    assert len(spans) == 2


def test_an_unknown_protocol_is_refused_saying_which_are_known() -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _run({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})

    assert "'http/json' is not supported; use one of http/protobuf, grpc" in failed.value.stderr
