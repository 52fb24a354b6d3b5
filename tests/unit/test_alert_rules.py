"""The chart's alerts (charts/kanal/files/kanal-rules.yml), evaluated by Prometheus's own rule
tester (`promtool test rules`) on series with the dispatcher's labels: each alert fires for the
Trigger or Subscription in trouble, names it, and keeps a Trigger and a Subscription of the
same name apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from dispatcher.metrics import PLAN_LABELS

RULES = Path(__file__).resolve().parents[2] / "charts" / "kanal" / "files" / "kanal-rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"  # Debian's prometheus package (make tools)

TRIGGER = {"namespace": "shop", "kind": "trigger", "parent": "default", "trigger": "orders"}
SUBSCRIPTION = {"namespace": "shop", "kind": "subscription", "parent": "pipe", "trigger": "orders"}


def _series(metric: str, plan: dict[str, str], **extra: str) -> str:
    assert list(plan) == PLAN_LABELS  # the dispatcher's labels, in its order
    labels = ",".join(f'{k}="{v}"' for k, v in {**plan, **extra}.items())
    return f"{metric}{{{labels}}}"


def _run(tmp_path: Path, series: dict[str, str], checks: list[dict[str, Any]]) -> None:
    """`promtool test rules` on `series` (name: values, a sample a minute) with `checks`."""
    test = {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": checks,
    }
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [test]}
    path = tmp_path / "rules-test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _fires(alert: str, at: str, plan: dict[str, str], summary: str) -> dict[str, Any]:
    """The check that `alert` fires at `at` for `plan` alone, with `summary` and its description."""
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == alert]
    labels = {k: plan[k] for k in ("namespace", "kind", "trigger")}
    expected = {
        "exp_labels": {"severity": "warning", **labels},
        "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
    }
    return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}


def test_dead_letter_rate_fires_for_the_subscription_only(tmp_path: Path) -> None:
    events = "kanal_dispatcher_events_total"
    _run(
        tmp_path,
        {
            # The Subscription dead-letters 10% of its events; the Trigger of the same name
            # delivers everything.
            _series(events, SUBSCRIPTION, outcome="delivered"): "0+90x30",
            _series(events, SUBSCRIPTION, outcome="dead_lettered"): "0+10x30",
            _series(events, TRIGGER, outcome="delivered"): "0+100x30",
            _series(events, TRIGGER, outcome="filtered"): "0+500x30",
        },
        [
            {"eval_time": "3m", "alertname": "KanalDeadLetterRate", "exp_alerts": []},
            _fires(
                "KanalDeadLetterRate",
                "15m",
                SUBSCRIPTION,
                "Subscription shop/orders dead-letters or drops over 5% of its events",
            ),
        ],
    )


def test_consumer_lag_alert_fires_for_a_growing_backlog_only(tmp_path: Path) -> None:
    lag = "kanal_dispatcher_consumer_lag"
    _run(
        tmp_path,
        {
            # The Trigger's backlog grows on two partitions; the Subscription's is large but
            # shrinking.
            _series(lag, TRIGGER, partition="0"): "600+20x40",
            _series(lag, TRIGGER, partition="1"): "600+20x40",
            _series(lag, SUBSCRIPTION, partition="0"): "5000-10x40",
        },
        [_fires("KanalConsumerLagGrowing", "30m", TRIGGER, "Trigger shop/orders is falling behind")],
    )
