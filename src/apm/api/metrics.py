"""Prometheus metrics at /metrics: HTTP requests by route template, and ingest outcomes.

The HTTP metrics come from Litestar's Prometheus plugin, labelled with the route TEMPLATE
(`/api/requests/{request_id}`), never the raw path: one series per route, however many ids
are requested. Ingest adds what the request counters cannot see: how many events a bulk
request carried and how many of them were stored or rejected.

Metrics live in the prometheus_client default registry (what the plugin's controller exports).
With several worker processes, set PROMETHEUS_MULTIPROC_DIR (`apm serve --workers N` does) so
that a scrape sums every worker.
"""

from __future__ import annotations

from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import Counter

PREFIX = "apm"

INGEST_EVENTS = Counter(
    f"{PREFIX}_ingest_events",
    "Events received by POST /api/requests/ingest/, by outcome (inserted or rejected).",
    ["outcome"],
)
# Both series exist from the start, so rate() and alerts work before the first ingest.
_INSERTED = INGEST_EVENTS.labels("inserted")
_REJECTED = INGEST_EVENTS.labels("rejected")


def record_ingest(*, inserted: int, rejected: int) -> None:
    """Count the outcome of one ingest request (call once per request, after storing)."""
    if inserted:
        _INSERTED.inc(inserted)
    if rejected:
        _REJECTED.inc(rejected)


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name="apm",
        prefix=PREFIX,
        group_path=True,
        # Scrapes are not traffic.
        exclude=["^/metrics"],
    )


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False
