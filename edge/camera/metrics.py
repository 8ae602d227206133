"""The camera daemon's Prometheus metrics, on ``prometheus_client``.

Each daemon owns a :class:`Registry` (a ``CollectorRegistry``, not the library's global ``REGISTRY``, so
several daemons in one process do not collide) that also carries the library's process metrics
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``process_open_fds``, ... on Linux) and
``python_info``. Components keep plain integer counters; :class:`CounterFunction` (and the library's
``Gauge.set_function``) read them at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

try:  # the format generate_latest writes; CONTENT_TYPE_LATEST is text format 1.0.0 since prometheus_client 0.22
    from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # older prometheus_client: CONTENT_TYPE_LATEST is still 0.0.4
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "CounterFunction", "Registry"]

# Seconds: 1 ms .. 2.5 s covers a Jetson at 2 ms and a Pi Zero at a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Registry(CollectorRegistry):
    """One daemon's metrics plus process and platform metrics; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        super().__init__()
        ProcessCollector(registry=self)
        PlatformCollector(registry=self)

    def render(self) -> str:
        return generate_latest(self).decode()


class CounterFunction(Collector):
    """An unlabelled counter whose value ``function`` returns at each scrape (name it ``..._total``)."""

    def __init__(
        self, name: str, documentation: str, function: Callable[[], float], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.function = name, documentation, function
        registry.register(self)

    def describe(self) -> Iterable[Metric]:  # the names, for the registry's duplicate check
        return [CounterMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, value=float(self.function()))]
