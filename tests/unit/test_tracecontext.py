"""channel.tracecontext and channel.tracing's pure parts: reading a stored traceparent, where a
trace is sampled, the sampler the SDK is given, the OTLP URL."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind, get_current_span

from channel.settings import Settings
from channel.tracecontext import TraceParent, flagged_sampled, keeps_root, parse, traces_url
from channel.tracing import Tracing, context_of, sampler

ROOT = Path(__file__).resolve().parents[2]
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param(f"00-{TRACE}-{SPAN}-01", TraceParent(int(TRACE, 16), int(SPAN, 16), True), id="sampled"),
        pytest.param(
            f"00-{TRACE}-{SPAN}-00", TraceParent(int(TRACE, 16), int(SPAN, 16), False), id="unsampled"
        ),
        pytest.param(
            f"00-{TRACE}-{SPAN}-03", TraceParent(int(TRACE, 16), int(SPAN, 16), True), id="other-flags"
        ),
        pytest.param(
            f"00-{TRACE}-{SPAN}-01".encode(), TraceParent(int(TRACE, 16), int(SPAN, 16), True), id="bytes"
        ),
        pytest.param(
            f"01-{TRACE}-{SPAN}-01-later",
            TraceParent(int(TRACE, 16), int(SPAN, 16), True),
            id="later-version",
        ),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param(f"00-{TRACE}-{SPAN}-01-x", None, id="version-00-longer"),
        pytest.param(f"01-{TRACE}-{SPAN}-01x", None, id="later-version-no-dash"),
        pytest.param(f"ff-{TRACE}-{SPAN}-01", None, id="version-ff"),
        pytest.param(f"00-{TRACE.upper()}-{SPAN}-01", None, id="upper-case"),
        pytest.param(f"00-{'0' * 32}-{SPAN}-01", None, id="zero-trace"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", None, id="zero-span"),
        pytest.param(f"00_{TRACE}-{SPAN}-01", None, id="bad-separator"),
        pytest.param(f"00-{TRACE[:-1]}g-{SPAN}-01", None, id="not-hex"),
    ],
)
def test_parse(value: str | bytes | None, parsed: TraceParent | None) -> None:
    assert parse(value) == parsed


@pytest.mark.parametrize(
    ("value", "flagged"),
    [
        (f"00-{TRACE}-{SPAN}-01", True),
        (f"00-{TRACE}-{SPAN}-00", False),
        (f"00-{TRACE}-{SPAN}-03", True),
        (f"00-{TRACE}-{SPAN}-02", False),
        (f"00-{TRACE}-{SPAN}-01".encode(), True),
        (f"00-{TRACE}-{SPAN}-00".encode(), False),
        ("00-short-01", False),
    ],
)
def test_flagged_sampled_agrees_with_parse_on_the_flag(value: str | bytes, flagged: bool) -> None:
    assert flagged_sampled(value) is flagged
    parsed = parse(value)
    assert parsed is None or parsed.sampled is flagged


def test_a_parsed_traceparent_is_written_back_as_version_00() -> None:
    for flags in ("00", "01"):
        value = f"00-{TRACE}-{SPAN}-{flags}"
        parsed = parse(value)
        assert parsed is not None and parsed.header() == value


@pytest.mark.parametrize(
    ("ratio", "draw", "kept"),
    [(0.0, 0.0, False), (0.01, 0.0099, True), (0.01, 0.01, False), (1.0, 0.999999, True), (0.5, 0.7, False)],
)
def test_keeps_root(ratio: float, draw: float, kept: bool) -> None:
    assert keeps_root(ratio, draw) is kept


def test_keeps_root_keeps_about_the_ratio() -> None:
    draws = random.Random(7)
    kept = sum(keeps_root(0.01, draws.random()) for _ in range(100_000))
    assert 850 < kept < 1150


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", "https://otel.example/v1/traces"),
        ("http://gateway/otlp/traces", "http://gateway/otlp/traces"),
    ],
)
def test_traces_url(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


@pytest.mark.parametrize(
    ("parent", "decision"),
    [
        pytest.param(TraceParent(1, 2, True), Decision.RECORD_AND_SAMPLE, id="sampled-parent"),
        pytest.param(TraceParent(1, 2, False), Decision.DROP, id="unsampled-parent"),
        pytest.param(None, Decision.RECORD_AND_SAMPLE, id="root-decided-by-the-ingress"),
    ],
)
def test_the_sampler_follows_the_parent_and_keeps_roots(
    parent: TraceParent | None, decision: Decision
) -> None:
    context = context_of(parent) if parent is not None else None
    result = sampler().should_sample(context, 99, "deliver", SpanKind.CLIENT)
    assert result.decision is decision


def test_context_of_a_stored_traceparent_is_its_remote_span() -> None:
    span = get_current_span(context_of(TraceParent(int(TRACE, 16), int(SPAN, 16), True))).get_span_context()
    assert (span.trace_id, span.span_id, span.is_remote, span.trace_flags.sampled) == (
        int(TRACE, 16),
        int(SPAN, 16),
        True,
        True,
    )


def test_with_tracing_off_no_component_loads_opentelemetry() -> None:
    # The ingress's and the dispatcher's code, and the composition root, as a component with
    # KANAL_TRACING_ENDPOINT unset imports them.
    code = (
        "import sys, ingress.service, dispatcher.service, kanal.components, channel.tracecontext\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_a_full_queue_is_logged_once_a_minute_not_once_a_span(caplog: pytest.LogCaptureFixture) -> None:
    tracing = Tracing(Settings(), "ingress", exporter=InMemorySpanExporter())
    try:
        logger = logging.getLogger("opentelemetry.sdk._shared_internal")
        with caplog.at_level(logging.WARNING, logger=logger.name):
            for _ in range(1000):
                logger.warning("Queue full, dropping %s.", "span")
            logger.warning("Exception while exporting %s.", "span")
        messages = [record.getMessage() for record in caplog.records]
        assert len(messages) == 2 and messages[0].startswith("Queue full, dropping span.")
    finally:
        tracing.shutdown()
