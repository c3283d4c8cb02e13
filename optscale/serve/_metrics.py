"""Prometheus metrics of one app (their own registry, so that apps in one process never mix).

- ``optscale_requests_total{endpoint, status}``: client requests answered (``status``: ok,
  budget, upstream_error, scorer_error, policy_error, cancelled, or the HTTP error class
  ``client_error``).
- ``optscale_samples_total{endpoint}``: samples drawn from the upstream (every one paid for).
- ``optscale_tokens_total{endpoint, kind}``: ``prompt`` (once per request) and ``completion``
  tokens (every sample).
- ``optscale_tokens_saved_total{endpoint}``: output tokens not spent against the request's
  maximum: ``(n_max - n_used) x`` the request's mean tokens per sample.
- ``optscale_samples_per_request{endpoint}``: histogram of samples drawn per request.
- ``optscale_request_seconds{endpoint, stream}``: histogram of client request latency.
- ``optscale_upstream_seconds``: histogram of upstream attempt latency.
- ``optscale_upstream_errors_total{kind}``: failed upstream attempts (``timeout``,
  ``connection``, ``http_429``, ``http_4xx``, ``http_5xx``, ``too_large``, ``malformed``),
  retried or not.
- ``optscale_scorer_seconds`` / ``optscale_scorer_errors_total``: scoring rounds.
- ``optscale_requests_in_progress`` and ``optscale_upstream_in_flight``: gauges.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_SAMPLES = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The app's metrics (see the module docstring); also the upstream client's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("optscale_requests", "Client requests answered",
                                ["endpoint", "status"], registry=r)
        self.samples = Counter("optscale_samples", "Samples drawn from the upstream",
                               ["endpoint"], registry=r)
        self.tokens = Counter("optscale_tokens", "Tokens paid for", ["endpoint", "kind"],
                              registry=r)
        self.tokens_saved = Counter("optscale_tokens_saved",
                                    "Output tokens not spent against the request's maximum",
                                    ["endpoint"], registry=r)
        self.samples_per_request = Histogram("optscale_samples_per_request",
                                             "Samples drawn per request", ["endpoint"],
                                             buckets=_SAMPLES, registry=r)
        self.latency = Histogram("optscale_request_seconds", "Client request latency",
                                 ["endpoint", "stream"], buckets=_LATENCY, registry=r)
        self.upstream_latency = Histogram("optscale_upstream_seconds",
                                          "Upstream attempt latency", buckets=_LATENCY,
                                          registry=r)
        self.upstream_errors = Counter("optscale_upstream_errors", "Failed upstream attempts",
                                       ["kind"], registry=r)
        self.scorer_latency = Histogram("optscale_scorer_seconds", "Scoring round latency",
                                        buckets=_LATENCY, registry=r)
        self.scorer_errors = Counter("optscale_scorer_errors", "Failed scoring rounds",
                                     registry=r)
        self.in_progress = Gauge("optscale_requests_in_progress", "Client requests running",
                                 registry=r)
        self.upstream_in_flight = Gauge("optscale_upstream_in_flight",
                                        "Upstream requests in flight", registry=r)

    def attempt(self, kind: str, seconds: float) -> None:
        """One upstream attempt ended (the :class:`~optscale.serve._upstream.Observer` hook)."""
        self.upstream_latency.observe(seconds)
        if kind != "ok":
            self.upstream_errors.labels(kind).inc()

    def exposition(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
