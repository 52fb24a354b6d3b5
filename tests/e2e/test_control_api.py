"""The control API as users meet it, with real processes: `kanal dev` makes a token and the CLI
on the same machine finds it with no setup, while a call without it (or with another) is refused
and changes nothing; a controller that would serve the API on every interface without a token
does not start."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from channel.embedded import free_port
from support.dev import KanalDev

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "guarded"


def _broker(name: str) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }


def _call(url: str, body: object | None, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of one admin call made by hand, as an intruder would."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _user_env(config: Path) -> dict[str, str]:
    """The environment of a user with no Kanal settings: no Kafka named, no token given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KANAL_KAFKA_BOOTSTRAP_SERVERS", "KANAL_CONTROLLER_TOKEN", "KANAL_CONTROLLER_TOKEN_FILE")
    }
    env["XDG_CONFIG_HOME"] = str(config)
    return env


def _kanal(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kanal", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kanal_dev_refuses_a_call_without_its_token_and_its_cli_finds_the_token(tmp_path: Path) -> None:
    config = tmp_path / "config"
    ports = {
        "KANAL_INGRESS_PORT": free_port(),
        "KANAL_CONTROLLER_PORT": free_port(),
        "KANAL_DISPATCHER_PORT": free_port(),
        "KANAL_INGRESS_METRICS_PORT": free_port(),
    }
    env = _user_env(config) | {k: str(v) for k, v in ports.items()}
    dev = KanalDev(env)
    api = f"http://127.0.0.1:{ports['KANAL_CONTROLLER_PORT']}"
    token_file = config / "kanal" / "tokens" / f"localhost-{ports['KANAL_CONTROLLER_PORT']}"
    try:
        dev.wait_ready()
        # The token kanal dev made: in the per-user file, for this user only, and said where.
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"token       {token_file}" in dev.output
        token = token_file.read_text().strip()

        # Calls made by hand without that token: 401 with a Bearer challenge, and a JSON problem.
        status, headers, body = _call(f"{api}/v1/apply", {"documents": [_broker("intruder")]}, {})
        assert status == 401, body
        assert headers["WWW-Authenticate"] == 'Bearer realm="kanal"'
        assert body == {
            "problems": [
                {"path": "", "message": "this call needs a bearer token: Authorization: Bearer <token>"}
            ]
        }
        wrong = {"Authorization": "Bearer " + "x" * 43}
        status, headers, _ = _call(f"{api}/v1/apply", {"documents": [_broker("intruder-2")]}, wrong)
        assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="kanal", error="invalid_token"')
        status, _, _ = _call(f"{api}/v1/delete", {"resources": [{"kind": "Broker", "name": "x"}]}, wrong)
        assert status == 401
        assert _call(f"{api}/v1/resources/Broker", None, {})[0] == 401  # reads are closed too
        with urllib.request.urlopen(f"{api}/readyz", timeout=10) as response:  # health is open
            assert response.status == 200

        # The CLI on the same machine finds the token with no setup; the sentinel Broker it
        # applies after the refused ones is there, and the refused ones never appeared.
        manifest = json.dumps(_broker("sentinel"))
        applied = _kanal(env, "apply", "-f", "-", stdin=manifest)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "broker.eventing.knative.dev/sentinel created"
        listed = _kanal(env, "get", "brokers", "-n", NAMESPACE, "-o", "json")
        assert listed.returncode == 0, listed.stderr
        shown = json.loads(listed.stdout)  # one resource as itself, more as a List
        items = shown["items"] if shown.get("kind") == "List" else [shown]
        assert [item["metadata"]["name"] for item in items] == ["sentinel"]
        status, _, body = _call(
            f"{api}/v1/resources/Broker?namespace={NAMESPACE}", None, {"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and [d["metadata"]["name"] for d in body["items"]] == ["sentinel"]

        # Another user (no token file of theirs) is refused, and told where the token goes.
        port = str(ports["KANAL_CONTROLLER_PORT"])
        stranger = _kanal(_user_env(tmp_path / "stranger"), "get", "brokers", "--controller-port", port)
        assert stranger.returncode == 1
        assert "kanal: this call needs a bearer token" in stranger.stderr
        assert (
            "KANAL_CONTROLLER_TOKEN" in stranger.stderr
            and "stranger/kanal/tokens/localhost-" in stranger.stderr
        )
    finally:
        code = dev.interrupt()
    assert code == 0, dev.output
    assert not token_file.exists()  # the token lived as long as kanal dev


def test_a_controller_on_every_interface_without_a_token_does_not_start(tmp_path: Path) -> None:
    env = _user_env(tmp_path / "config") | {
        "KANAL_HOST": "0.0.0.0",
        "KANAL_CONTROLLER_PORT": str(free_port()),
        "KANAL_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # never reached: it stops before
    }
    result = _kanal(env, "controller")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"kanal controller: the admin API on 0.0.0.0:{env['KANAL_CONTROLLER_PORT']} would be open to"
        " anyone who reaches it: set KANAL_CONTROLLER_TOKEN_FILE (a file of bearer tokens) or"
        " KANAL_CONTROLLER_TOKEN, or bind it to loopback (KANAL_CONTROLLER_HOST=127.0.0.1)"
    ]
    assert not (tmp_path / "config").exists()
