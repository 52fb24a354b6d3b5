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


def _run(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "rules-test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _alert(plan: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    labels = {k: plan[k] for k in ("namespace", "kind", "trigger")}
    return {
        "exp_labels": {"severity": "warning", **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


def test_dead_letter_rate_fires_for_the_subscription_only(tmp_path: Path) -> None:
    events = "kanal_dispatcher_events_total"
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "KanalDeadLetterRate"]
    _run(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    # The Subscription dead-letters 10% of its events; the Trigger of the same
                    # name delivers everything.
                    {"series": _series(events, SUBSCRIPTION, outcome="delivered"), "values": "0+90x30"},
                    {"series": _series(events, SUBSCRIPTION, outcome="dead_lettered"), "values": "0+10x30"},
                    {"series": _series(events, TRIGGER, outcome="delivered"), "values": "0+100x30"},
                    {"series": _series(events, TRIGGER, outcome="filtered"), "values": "0+500x30"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "KanalDeadLetterRate", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "KanalDeadLetterRate",
                        "exp_alerts": [
                            _alert(
                                SUBSCRIPTION,
                                "Subscription shop/orders dead-letters or drops over 5% of its events",
                                rule["annotations"]["description"],
                            )
                        ],
                    },
                ],
            }
        ],
    )


def test_consumer_lag_alert_fires_for_a_growing_backlog_only(tmp_path: Path) -> None:
    lag = "kanal_dispatcher_consumer_lag"
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "KanalConsumerLagGrowing"]
    _run(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    # The Trigger's backlog grows on two partitions; the Subscription's is large
                    # but shrinking.
                    {"series": _series(lag, TRIGGER, partition="0"), "values": "600+20x40"},
                    {"series": _series(lag, TRIGGER, partition="1"), "values": "600+20x40"},
                    {"series": _series(lag, SUBSCRIPTION, partition="0"), "values": "5000-10x40"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "KanalConsumerLagGrowing",
                        "exp_alerts": [
                            _alert(
                                TRIGGER,
                                "Trigger shop/orders is falling behind",
                                rule["annotations"]["description"],
                            )
                        ],
                    },
                ],
            }
        ],
    )
