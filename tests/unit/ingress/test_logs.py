"""What the ingress logs for operators: each refusal with the event's id when known, its Broker
or Channel, the status and why, never the event's data; sampled so a flood of refusals writes a
line every few seconds with a count; each accepted event at DEBUG only."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from test_app import BINARY, call

from channel.errors import Unavailable
from channel.runner import JsonFormatter
from channel.settings import Settings
from ingress.app import IngressApp
from ingress.routing import Route
from support.memory_sink import MemoryEventSink

SECRET = b'{"card": "4111 1111 1111 1111"}'


def _app(sink: MemoryEventSink) -> IngressApp:
    app = IngressApp(Settings(ingress_max_body_bytes=1000), sink, ready=lambda: True)
    app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic-b")}
    return app


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ingress.app"]


async def test_a_refusal_names_the_event_the_broker_and_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingress.app")
    app = _app(MemoryEventSink())
    # No ce-source: invalid.
    headers = [(k, b"order-7" if k == b"ce-id" else v) for k, v in BINARY if k != b"ce-source"]
    status, _, _ = await call(app, "POST", "/ns/default", headers, SECRET)
    assert status == 400
    [line] = _lines(caplog)
    assert "event_id='order-7'" in line
    assert "broker ns/default" in line
    assert "status=400" in line
    assert "source" in line  # the problem
    assert "4111" not in caplog.text  # never the data


async def test_refusals_are_sampled_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingress.app")
    app = _app(MemoryEventSink())
    for _ in range(5):
        status, _, _ = await call(app, "POST", "/ns/default", [(b"content-type", b"text/plain")], b"x")
        assert status == 400
    assert len(_lines(caplog)) == 1  # the first at once, the next four held back
    app._sampler.interval = 0.0  # the interval has passed
    await call(app, "POST", "/ns/default", [(b"content-type", b"text/plain")], b"x")
    first, second = _lines(caplog)
    assert "more like it" not in first
    assert "(4 more like it not logged" in second


async def test_a_503_is_a_warning_with_the_event_ids(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingress.app")
    sink = MemoryEventSink()
    sink.fail = Unavailable("Kafka is away")
    app = _app(sink)
    status, _, _ = await call(app, "POST", "/ns/default", BINARY, SECRET)
    assert status == 503
    [record] = [r for r in caplog.records if r.name == "ingress.app"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "event_id='1'" in message and "status=503" in message and "Kafka is away" in message
    assert "4111" not in caplog.text


async def test_unknown_paths_are_logged_quoted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingress.app")
    app = _app(MemoryEventSink())
    status, _, _ = await call(app, "POST", "/ns/missing\nFAKE LINE", BINARY, b"{}")
    assert status == 404
    [line] = _lines(caplog)
    assert "\n" not in line  # a path cannot forge a log line
    assert "status=404" in line


async def test_accepted_events_are_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingress.app")
    status, _, _ = await call(_app(MemoryEventSink()), "POST", "/ns/default", BINARY, SECRET)
    assert status == 202
    assert _lines(caplog) == []
    caplog.set_level(logging.DEBUG, logger="ingress.app")
    status, _, _ = await call(_app(MemoryEventSink()), "POST", "/ns/default", BINARY, SECRET)
    assert status == 202
    assert _lines(caplog) == ["accepted event_id='1' for broker ns/default"]


def test_json_lines_carry_the_message_and_the_traceback_in_one_record() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "kanal.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR"
    assert parsed["logger"] == "kanal.x"
    assert parsed["message"] == "failed here"
    assert parsed["time"].endswith("+00:00")
    assert "ValueError: boom" in parsed["exception"]
