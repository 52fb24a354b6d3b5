"""The ingress's way back after failed writes (`IngressService._recover`): it reports ready again
once Kafka answers, and says so once, not at every turn, while writes keep failing although
Kafka answers metadata (too few in-sync replicas, say)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from ingress.service import IngressService


class _Sink:
    """Writes that fail again at once after each recovery, as with too few in-sync replicas."""

    def __init__(self, turns: int) -> None:
        self.failing = True
        self.recoveries = 0
        self.turns = turns
        self.done = asyncio.Event()
        self.producer = SimpleNamespace(client=SimpleNamespace(force_metadata_update=self._metadata))

    async def _metadata(self) -> bool:
        return True

    def __setattr__(self, name: str, value: object) -> None:
        if name == "failing" and value is False:
            self.recoveries += 1
            if self.recoveries >= self.turns:
                self.done.set()
            value = True  # the next write fails again
        super().__setattr__(name, value)


async def test_a_recovery_that_does_not_hold_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = _Sink(turns=20)
    service = SimpleNamespace(_sink=sink, settings=SimpleNamespace(kafka_produce_timeout=1.0))
    caplog.set_level(logging.INFO, logger="ingress.service")
    task = asyncio.create_task(IngressService._recover(service, interval=0.001, quiet=60.0))  # type: ignore[arg-type]
    await asyncio.wait_for(sink.done.wait(), 5)
    task.cancel()
    said = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert sink.recoveries >= 20
    assert len(said) == 1


async def test_a_recovery_is_said_again_after_the_quiet_time(caplog: pytest.LogCaptureFixture) -> None:
    sink = _Sink(turns=5)
    service = SimpleNamespace(_sink=sink, settings=SimpleNamespace(kafka_produce_timeout=1.0))
    caplog.set_level(logging.INFO, logger="ingress.service")
    task = asyncio.create_task(IngressService._recover(service, interval=0.001, quiet=0.0))  # type: ignore[arg-type]
    await asyncio.wait_for(sink.done.wait(), 5)
    task.cancel()
    assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) >= 5
