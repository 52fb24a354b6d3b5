"""Lock-free counters and histograms for the hot paths, exported through prometheus-client.

prometheus-client's own metrics take a lock on every `inc()` and `observe()` and walk every
bucket of a histogram: a few microseconds each, several times per request in the ingress. A Kanal
process updates its hot-path metrics from one thread (its event loop), so these keep plain
numbers per label set and turn them into metric families only when scraped. Names, labels and
the exposition are those of prometheus-client's Counter and Histogram (`_total`, `_bucket` with
cumulative `le` counts, `_sum`, `_count`); there is no `_created` sample.

    EVENTS = LocalCounter("kanal_ingress_events", "Events received", ["kind", "code"])
    EVENTS.labels("broker", "202").value += 1     # keep the child; look it up once

Only for metrics updated from the event loop's thread; anything else uses prometheus-client's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

__all__ = ["LocalCounter", "LocalHistogram"]


class CounterValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramValue:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # The first bound >= value: Prometheus buckets are "less than or equal".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry | None
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        (registry if registry is not None else REGISTRY).register(self)

    def _check(self, values: tuple[str, ...]) -> None:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")


class LocalCounter(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._children: dict[tuple[str, ...], CounterValue] = {}
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)

    def labels(self, *values: str) -> CounterValue:
        child = self._children.get(values)
        if child is None:
            self._check(values)
            child = self._children[values] = CounterValue()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class LocalHistogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        if not bounds:
            raise ValueError(f"{name} needs at least one finite bucket")
        self._bounds = bounds
        self._children: dict[tuple[str, ...], HistogramValue] = {}
        super().__init__(name, documentation, labelnames, registry)
        # Without labels: the one child, exported from the start with zero counts, as
        # prometheus-client does.
        self._only = self.labels() if not self.labelnames else None

    def labels(self, *values: str) -> HistogramValue:
        child = self._children.get(values)
        if child is None:
            self._check(values)
            child = self._children[values] = HistogramValue(self._bounds)
        return child

    def observe(self, value: float) -> None:
        """For a histogram without labels (HistogramValue.observe, inline: once or twice per request)."""
        child = self._only
        if child is None:
            raise ValueError(f"{self.name} has labels {self.labelnames}; observe through labels()")
        child.counts[bisect_left(child.bounds, value)] += 1
        child.sum += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        # 0.005, 1.0 and +Inf, as prometheus-client writes them.
        edges = [*(repr(b) for b in self._bounds), "+Inf"]
        for values, child in list(self._children.items()):
            cumulative = 0
            buckets = []
            for edge, count in zip(edges, child.counts, strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(values), buckets, child.sum)
        yield family
