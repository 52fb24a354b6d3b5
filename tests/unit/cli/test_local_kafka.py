"""The per-user file where the CLI finds a `kanal dev` run's Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kanal.local_kafka import local_kafka_path, read_local_kafka, remove_local_kafka, write_local_kafka

SETTINGS = {"kafka_bootstrap_servers": "127.0.0.1:40001", "kafka_idempotence": "false"}


def test_named_after_the_controller_beside_its_token(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert (
        local_kafka_path("http://127.0.0.1:8081", environ) == tmp_path / "kanal" / "kafka" / "localhost-8081"
    )
    assert local_kafka_path("http://127.0.0.1:bad", environ) is None


def test_written_private_read_back_and_removed_only_if_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "kafka" / "localhost-8081"
    write_local_kafka(path, SETTINGS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_local_kafka(path) == SETTINGS
    remove_local_kafka(path, {"kafka_bootstrap_servers": "127.0.0.1:1"})  # another run's
    assert path.exists()
    remove_local_kafka(path, SETTINGS)
    assert not path.exists() and read_local_kafka(path) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"127.0.0.1:9092",
        b"[]",
        json.dumps({"kafka_bootstrap_servers": "x", "controller_token": "t"}).encode(),
        json.dumps({"kafka_bootstrap_servers": 9092}).encode(),
        json.dumps({"kafka_bootstrap_servers": "x" * 5000}).encode(),
    ],
    ids=["empty", "not-json", "not-object", "another-setting", "not-text", "too-large"],
)
def test_a_file_that_is_not_one_is_not_used(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "localhost-8081"
    path.write_bytes(content)
    assert read_local_kafka(path) is None
