"""Running a service in the foreground: logging, signals, graceful stop.

Each component's entry point (`kanal controller|ingress|dispatcher`) is a composition root: it
reads the settings, configures logging, and runs one service under `run_service`. SIGTERM or
SIGINT asks the service to shut down gracefully; a second signal cancels it outright.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["JsonFormatter", "Service", "configure_logging", "run_service"]


class Service(Protocol):
    async def run(self) -> None: ...
    def shutdown(self) -> None: ...


class JsonFormatter(logging.Formatter):
    """One JSON object per line (time in UTC, level, logger, message, and the traceback, if
    any, in `exception`), for log collectors: a multi-line traceback stays one record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at `level`, as text lines or (fmt "json") JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiokafka is chatty at INFO; its DEBUG is there when Kanal runs at DEBUG.
    if level != "DEBUG":
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


async def _serve(service: Service) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            service.shutdown()
        else:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await service.run()


def run_service(factory: Callable[[], Service], setup: Callable[[], Awaitable[None]] | None = None) -> int:
    """Run the service until it stops; the process exit code."""

    async def main() -> None:
        if setup is not None:
            await setup()
        await _serve(factory())

    try:
        _new_loop_runner(main)
    except asyncio.CancelledError:
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _new_loop_runner(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
