"""Benchmark results as values, and their three renderings: the console table, Markdown, a PNG.

A `Row` is one figure with the baseline measured beside it in the same run, the targets it is
reported against and the broker it was measured on. Targets are printed as PASS or MISS, never
asserted: the machines these run on are shared and noisy, and a figure is information, not a
test. A run on two brokers is rendered side by side: one column per broker in the Markdown's
summary and in the PNG, then each broker's full table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Target:
    text: str
    met: bool


@dataclass(slots=True)
class Row:
    scenario: str
    measure: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    targets: list[Target] = field(default_factory=list)
    # Latency rows: p50/p90/p99/max in ms (value is the p99).
    percentiles: dict[str, float] | None = None
    note: str = ""
    # The broker measured on, as results name it: "embedded (Tansu)", "Apache Kafka 4.4.0".
    broker: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.value):
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if not self.targets:
            return ""
        return "PASS" if all(t.met for t in self.targets) else "MISS"


PERCENTILES = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    if unit == "ev/s":
        return f"{value:,.0f} ev/s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:,.2f} {unit}"


def cells(row: Row) -> list[str]:
    if row.percentiles is not None:
        p = row.percentiles
        kanal = " / ".join(f"{key.removesuffix('_ms')} {p[key]:.1f}" for key in PERCENTILES) + " ms"
    else:
        kanal = fmt(row.value, row.unit)
    baseline = f"{row.baseline_name}: {fmt(row.baseline, row.unit)}" if row.baseline_name else "—"
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
    targets = "; ".join(t.text for t in row.targets) or "—"
    verdict = row.verdict or "—"
    measure = f"{row.measure} ({row.note})" if row.note else row.measure
    return [row.scenario, measure, kanal, baseline, ratio, targets, verdict]


HEADER = ["Scenario", "Measure", "Kanal", "Baseline (same run)", "Ratio", "Target", "Result"]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def console_table(rows: list[Row]) -> str:
    table = [HEADER, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python, OS, date and the commit measured."""
    cpu = platform.processor() or "unknown CPU"
    ram = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "channel", "ingress", "dispatcher")
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    if dirty:
        commit += " (plus uncommitted changes in: " + ", ".join(line[3:] for line in dirty.splitlines()) + ")"
    return {
        "CPU": cpu,
        "Cores": str(os.cpu_count()),
        "RAM": ram,
        "Python": sys.version.split()[0],
        "OS": platform.platform(),
        "Date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "Load average at start (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Commit": commit,
    }


# Runs from before rows named their broker were all on the embedded one.
EARLIER_BROKER = "embedded (Tansu)"


def by_broker(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped by broker, the brokers in the order they first appear."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.broker or EARLIER_BROKER, []).append(row)
    return groups


def summary_cell(row: Row | None) -> str:
    """One broker's figure in the side-by-side table: value, ratio to its baseline, verdict."""
    if row is None:
        return "—"
    parts = [fmt(row.value, row.unit)]
    if row.ratio is not None:
        parts.append(f"{row.ratio:.2f} of baseline")
    if row.verdict:
        parts.append(f"{row.verdict} ({'; '.join(t.text for t in row.targets)})")
    return ", ".join(parts)


def side_by_side_table(groups: dict[str, list[Row]]) -> str:
    """One line per measure, one column per broker; details are in each broker's own table."""
    brokers = list(groups)
    keys: dict[tuple[str, str], dict[str, Row]] = {}
    for broker, rows in groups.items():
        for row in rows:
            keys.setdefault((row.scenario, row.measure), {})[broker] = row
    lines = [
        "| Scenario | Measure | " + " | ".join(brokers) + " |",
        "|---|---|" + "---:|" * len(brokers),
    ]
    lines += [
        f"| {scenario} | {measure} | " + " | ".join(summary_cell(found.get(b)) for b in brokers) + " |"
        for (scenario, measure), found in keys.items()
    ]
    return "\n".join(lines)


def write_markdown(path: Path, rows: list[Row], info: dict[str, str], command: str, seconds: float) -> None:
    groups = by_broker(rows)
    text = [
        "# Kanal benchmark results",
        "",
        f"Produced by `{command}` in {seconds / 60:.1f} minutes. Every figure is measured with its "
        "baseline in the same run and on the same broker, on loopback, with the load in a separate "
        "process; the targets are reported, never asserted.",
        "",
        *(f"- **{key}**: {value}" for key, value in info.items()),
        "",
    ]
    if len(groups) > 1:
        text += [
            "## Side by side",
            "",
            "Each broker's figure, its ratio to the baseline measured on that broker in the same run, "
            "and its verdict against that broker's targets.",
            "",
            side_by_side_table(groups),
            "",
        ]
    text += ["![throughput and latency per scenario and broker](results.png)", ""]
    for broker, group in groups.items():
        verdicts = [r.verdict for r in group if r.verdict]
        text += [
            f"## {broker}",
            "",
            markdown_table(group),
            "",
            f"Targets: {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS.",
            "",
        ]
    text += ["## How these are measured", "", *METHOD, ""]
    path.write_text("\n".join(text))


METHOD = [
    "- Every scenario runs on each broker in turn, a fresh broker for each (several for the "
    "latency and Triggers scenarios), with real `kanal` processes; everything, the load included, "
    "shares the cores listed above.",
    "- The embedded broker is Tansu with in-memory storage (a Kafka-protocol broker, not Apache "
    "Kafka). As `kanal dev` does on it, Kanal runs with idempotence off (no InitProducerId) and, as "
    "it answers a fetch only when its wait expires, `KANAL_KAFKA_FETCH_MAX_WAIT_MS=20` and, for the "
    "dispatcher's reads of event topics, `KANAL_KAFKA_EVENT_FETCH_MAX_WAIT_MS=10`.",
    "- Apache Kafka is one KRaft node (broker and controller in one JVM, the version above, from "
    "Maven jars, configured as the compose file's `kafka` service) with its log on local disk, "
    "its JVM warmed up before anything is measured (4 s of bare produce and fetch at 5,000 ev/s "
    "on a topic of its own: a fresh JVM's first records cost it about three times the CPU). Kanal "
    "runs with its defaults: idempotent producers, 500 ms fetch waits (Kafka answers as soon as "
    "records arrive). The bare aiokafka baselines use the same producer and fetch settings as "
    "Kanal on each broker.",
    "- Broker CPU: the broker process's user + system time (/proc/<pid>/stat, every thread: the "
    "JVM's on Apache Kafka, Tansu's on the embedded broker) from the moment it is ready until the "
    "scenario's measuring ends, as a share of all cores' time over that span; its start-up (and "
    "warm-up) is excluded and given in the note.",
    "- HTTP throughput: `wrk -t1 -c64` for the stated time after a 2 s warm-up, binary-mode "
    "CloudEvents with a JSON body of the stated size; every Kanal 202 means acks=all.",
    "- Latency: `bench/loadgen.py`, open loop at a fixed rate on 64 keep-alive connections, each "
    "request timed from its scheduled start (no coordinated omission). It ticks every 1 ms, so up "
    "to 1 ms of its own lateness is in every figure; the bare-ASGI baseline shows that floor.",
    "- End to end: the load generator stamps each event (extension `benchsent`, wall clock) just "
    "before writing it; the sink (`bench/sink.py`, bare ASGI on uvicorn+httptools) subtracts it on "
    "receipt. The baseline is a bare aiokafka producer and consumer at the same rate, with the "
    "fetch wait Kanal's event reads have on that broker, on a fresh broker of its own (Kanal's part "
    "runs first, on another: the embedded broker's fetches slow as a topic grows); on the embedded "
    "broker a row with aiokafka's default 500 ms fetch wait shows what the short wait is worth.",
    "- Dispatcher: N events are written to the Broker's topic first (bare aiokafka, the ingress's "
    "record format), after the Trigger is Ready and before `kanal dispatcher` starts; delivered "
    "events/s is N over first-to-last receipt at the sink, and the note gives the time from "
    "process start (start-up and group join included). Baseline: a bare aiohttp client posting "
    "the same N events to the same sink, 64 in flight.",
    "- Triggers: N Triggers with exact filters on N distinct types, the events' types cycling "
    "through them, so each Trigger selects 1/N; a fresh broker and dispatcher for each N.",
    "- Peak RSS: VmHWM from /proc/<pid>/status, read just before each process is stopped.",
]


def save_json(path: Path, rows: list[Row], info: dict[str, str], command: str, seconds: float) -> None:
    """The raw rows, so the Markdown and the chart can be drawn again without measuring again."""
    data = {"info": info, "command": command, "seconds": seconds, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")


def load_json(path: Path) -> tuple[list[Row], dict[str, str], str, float]:
    data = json.loads(path.read_text())
    rows = []
    for raw in data["rows"]:
        raw["targets"] = [Target(**t) for t in raw["targets"]]
        raw.setdefault("broker", EARLIER_BROKER)
        rows.append(Row(**raw))
    return rows, data["info"], data["command"], data["seconds"]


def write_png(path: Path, rows: list[Row]) -> None:
    """Throughput, Triggers and latency, one column per broker, each row of panels on one scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_broker(rows)
    fig, axes = plt.subplots(
        3,
        len(groups),
        figsize=(11 * len(groups), 17),
        sharex="row",
        squeeze=False,
        gridspec_kw={"height_ratios": [1.2, 0.7, 1.1]},
    )
    for column, (broker, group) in enumerate(groups.items()):
        if column:
            axes[1][column].sharey(axes[1][0])  # delivered events/s on one scale
        throughput_panel(axes[0][column], group, broker)
        triggers_panel(axes[1][column], group, broker)
        latency_panel(axes[2][column], group, broker)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def throughput_panel(ax: Axes, rows: list[Row], broker: str) -> None:
    throughput = [r for r in rows if r.unit == "ev/s" and not r.scenario.startswith("triggers")]
    if not throughput:
        ax.set_axis_off()
        return
    ys = range(len(throughput))
    ax.barh([y + 0.2 for y in ys], [r.value for r in throughput], height=0.4, label="Kanal")
    ax.barh(
        [y - 0.2 for y in ys],
        [r.baseline or 0 for r in throughput],
        height=0.4,
        label="baseline",
        color="tab:gray",
    )
    ax.set_yticks(list(ys), [f"{r.scenario}: {r.measure}" for r in throughput], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("events/s")
    ax.set_title(f"{broker}: throughput vs baseline (same run)")
    ax.legend(fontsize=8)


def triggers_panel(ax: Axes, rows: list[Row], broker: str) -> None:
    triggers = [r for r in rows if r.scenario.startswith("triggers") and r.unit == "ev/s"]
    if not triggers:
        ax.set_axis_off()
        return
    ax.bar([r.measure for r in triggers], [r.value for r in triggers], color="tab:blue")
    ax.set_ylabel("delivered events/s")
    ax.set_title(f"{broker}: Triggers on one Broker (1/N of events each)")
    rss = [r for r in rows if r.scenario.startswith("triggers") and r.unit == "MiB"]
    if rss:
        twin = ax.twinx()
        twin.plot([r.measure.replace(" peak RSS", "") for r in rss], [r.value for r in rss], "o-r")
        twin.set_ylabel("dispatcher peak RSS (MiB)", color="tab:red")
    ax.tick_params(axis="x", labelsize=7)


def latency_panel(ax: Axes, rows: list[Row], broker: str) -> None:
    latency = [r for r in rows if r.percentiles is not None]
    if not latency:
        ax.set_axis_off()
        return
    height = 0.2
    for k, key in enumerate(PERCENTILES):
        ax.barh(
            [i + (k - 1.5) * height for i in range(len(latency))],
            [(r.percentiles or {}).get(key, math.nan) for r in latency],
            height=height,
            label=key.removesuffix("_ms"),
        )
        baselines = [(i, r.baseline) for i, r in enumerate(latency) if r.baseline and key == "p99_ms"]
        if baselines:
            ax.scatter(
                [b for _, b in baselines],
                [i + (k - 1.5) * height for i, _ in baselines],
                marker="|",
                s=300,
                color="black",
                label="baseline p99",
                zorder=3,
            )
    ax.set_yticks(range(len(latency)), [f"{r.scenario}: {r.measure}" for r in latency], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms (log)")
    ax.set_title(f"{broker}: latency percentiles (black mark: the baseline's p99, same run)")
    ax.legend(fontsize=8, loc="lower right")
