"""Settings read from the environment, and the values derived from them."""

from __future__ import annotations

import pytest

from channel.settings import Settings


def test_event_reads_use_the_general_fetch_wait_unless_set_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_KAFKA_FETCH_MAX_WAIT_MS", "20")
    assert Settings().event_fetch_max_wait_ms() == 20
    monkeypatch.setenv("KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS", "10")
    settings = Settings()
    assert settings.event_fetch_max_wait_ms() == 10
    assert settings.kafka_fetch_max_wait_ms == 20  # the other reads keep theirs


def test_an_event_fetch_wait_below_one_millisecond_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValueError, match="kafka_event_fetch_max_wait_ms"):
        Settings()
