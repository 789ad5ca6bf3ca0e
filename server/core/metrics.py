"""Prometheus metrics: RPCs by method and code, latency, active streams, dependency health.

Each server owns its registry, so tests and several in-process servers never collide. With
several worker processes each worker serves its own registry on its own port (see __main__).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "amesa_rpc_total", "RPCs handled", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "amesa_rpc_duration_seconds",
            "RPC latency",
            ["method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "amesa_active_streams",
            "Open server streams",
            ["method"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.dependency_up = Gauge(
            "amesa_dependency_up",
            "1 when the dependency answered the last health probe",
            ["dependency"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

        # Label lookups take a lock and build a tuple on every call; the set of (method, code)
        # pairs is small and fixed, so the children are looked up once.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:
            children = (self.rpcs.labels(method, code), self.latency.labels(method))
            self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)
