"""`/metrics` (Prometheus text, prometheus-client) and `/healthz`.

Nothing is counted on the hot path for Prometheus' sake: at scrape time, one collector a
component (`sink_metrics(sink)`, `engine_metrics(engine)`, ...) reads what that component keeps
anyway. `routes(collectors, health)` serves them and the health report it is given; it imports
no service and holds no Daemon (the daemon picks its components' collectors).

| metric | type | labels |
|---|---|---|
| dispatcher_messages_total | counter | provider, status (sent/failed/rejected), code |
| dispatcher_outbox_rows | gauge | state (pending, due, claimed), sampled every 5 s |
| dispatcher_in_flight | gauge | |
| dispatcher_claimed_total, dispatcher_suppressed_total | counter | |
| dispatcher_rate_limit_per_second | gauge | provider (this worker's current pace, after its share and 429 backoff) |
| dispatcher_rate_share | gauge | (1 / live workers) |
| dispatcher_throttled_total | counter | provider (429 answers) |
| dispatcher_request_seconds | histogram | provider (provider answer time, one observation a request) |
| dispatcher_queue_seconds | histogram | (insert to accepted by the provider, one observation a sent row) |
| dispatcher_workers_live | gauge | |
| dispatcher_reclaimed_total, dispatcher_abandoned_total | counter | (claims of dead workers taken back / failed) |
| dispatcher_reports_total | counter | provider, status |
| dispatcher_reports_refused_total | counter | provider, reason (missing, wrong, unknown) |
| dispatcher_reports_unmatched_on_arrival_total, dispatcher_reports_matched_total | counter | |
| dispatcher_provider_state | gauge | provider, state (1 for the state it is in) |
| dispatcher_provider_state_changes_total | counter | provider, state (entered) |
| dispatcher_retries_total, dispatcher_deferred_total | counter | (requests retried; rows put back for a halted provider) |
| dispatcher_rescheduled_total, dispatcher_retry_for_expired_total | counter | (rows rescheduled in the outbox after a transient failure; rows failed once retry_for ran out) |
| dispatcher_webhook_backlog, dispatcher_webhook_oldest_seconds | gauge | (undelivered events, age of the oldest; sampled) |
| dispatcher_webhook_events_delivered_total, dispatcher_webhook_events_given_up_total | counter | |
| dispatcher_webhook_posts_total | counter | result (ok, failed) |
| dispatcher_api_requests_total | counter | route (post, get, lookup), status |
| dispatcher_api_messages_total | counter | outcome (queued, duplicate) |
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..engine import Engine, LaneState
from .api import Api
from .delivery_reports import ReportStore
from .health import Monitor
from .heartbeat import WorkerRegistry
from .histogram import Histogram
from .maintenance import Maintenance
from .outbox import OutboxSink, OutboxSource
from .webhooks import Webhooks

STATES = tuple(LaneState)  # a gauge a state, in order
Collect = Callable[[], Iterable[Metric]]  # one component's metrics, read at scrape time
Health = Callable[[], tuple[bool, dict[str, Any]]]  # (serving, the /healthz document)


def _counter(name: str, doc: str, labels: list[str], counts: Mapping[Any, float]) -> Metric:
    """A labelled counter from a mapping of label tuple (or one label) to count, in label order."""
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(counts.items()):
        fam.add_metric([str(k) for k in key] if isinstance(key, tuple) else [str(key)], n)
    return fam


def _histogram(name: str, doc: str, labels: list[str], series: list[tuple[list[str], Histogram]]) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in series:
        buckets, seen = [], 0
        for le, c in zip((*h.buckets, float("inf")), h.counts, strict=True):
            seen += c
            buckets.append(("+Inf" if le == float("inf") else repr(float(le)), seen))
        fam.add_metric(values, buckets, h.sum)
    return fam


# -- one collector a component -------------------------------------------------------------------------
def sink_metrics(sink: OutboxSink) -> Collect:
    def collect() -> Iterator[Metric]:
        yield _counter("dispatcher_messages", "Outbox rows finished, by provider, status and code",
                       ["provider", "status", "code"], sink.results)
        yield _histogram("dispatcher_request_seconds", "Provider answer time, one observation a request",
                         ["provider"], [([p], h) for p, h in sorted(sink.request_latency.items())])
        yield _histogram("dispatcher_queue_seconds", "From insert to accepted by the provider, per sent row", [],
                         [([], sink.queue_latency)])
    return collect


def engine_metrics(engine: Engine) -> Collect:
    def collect() -> Iterator[Metric]:
        yield GaugeMetricFamily("dispatcher_in_flight", "Rows claimed by this worker and not yet finished",
                                value=engine.in_flight)
        rate = GaugeMetricFamily("dispatcher_rate_limit_per_second", "This worker's current pace, requests/s",
                                 labels=["provider"])
        throttled = CounterMetricFamily("dispatcher_throttled", "429 answers", labels=["provider"])
        for lane in engine.snapshot():
            rate.add_metric([lane.alias], lane.pace)
            throttled.add_metric([lane.alias], lane.throttled)
        yield rate
        yield throttled
        yield CounterMetricFamily("dispatcher_retries", "Requests retried after a transient failure",
                                  value=engine.stats.retries)
    return collect


def source_metrics(source: OutboxSource) -> Collect:
    def collect() -> Iterator[Metric]:
        yield CounterMetricFamily("dispatcher_claimed", "Rows claimed by this worker", value=source.claimed)
        yield CounterMetricFamily("dispatcher_suppressed", "Rows not sent: the recipient opted out",
                                  value=source.suppressed)
        yield CounterMetricFamily("dispatcher_deferred", "Rows put back to pending for a halted provider",
                                  value=source.deferred_rows)
        yield CounterMetricFamily("dispatcher_rescheduled", "Rows rescheduled in the outbox after a transient failure",
                                  value=source.rescheduled)
        yield CounterMetricFamily("dispatcher_retry_for_expired", "Rows failed: transient failures past retry_for",
                                  value=source.retries_failed)
    return collect


def registry_metrics(registry: WorkerRegistry) -> Collect:
    def collect() -> Iterator[Metric]:
        yield GaugeMetricFamily("dispatcher_rate_share", "This worker's part of each provider's rate",
                                value=registry.share)
        yield GaugeMetricFamily("dispatcher_workers_live", "Live workers on this outbox", value=registry.live)
    return collect


def maintenance_metrics(maintenance: Maintenance) -> Collect:
    def collect() -> Iterator[Metric]:
        g = GaugeMetricFamily("dispatcher_outbox_rows", "Outbox rows by state (sampled)", labels=["state"])
        for state, n in maintenance.depth.items():
            g.add_metric([state], n)
        yield g
        yield CounterMetricFamily("dispatcher_reclaimed", "Claims of dead workers taken back by this worker",
                                  value=maintenance.reaped)
        yield CounterMetricFamily("dispatcher_abandoned", "Rows failed after too many claims by dead workers",
                                  value=maintenance.abandoned)
    return collect


def reports_metrics(reports: ReportStore) -> Collect:
    def collect() -> Iterator[Metric]:
        yield _counter("dispatcher_reports", "Delivery reports stored", ["provider", "status"], reports.received)
        yield _counter("dispatcher_reports_refused", "Delivery report calls refused", ["provider", "reason"],
                       reports.refused)
        yield CounterMetricFamily("dispatcher_reports_matched", "Reports matched to their outbox row",
                                  value=reports.matched)
        yield CounterMetricFamily("dispatcher_reports_unmatched_on_arrival",
                                  "Reports with no outbox row when they came", value=reports.unmatched_on_arrival)
    return collect


def monitor_metrics(monitor: Monitor) -> Collect:
    def collect() -> Iterator[Metric]:
        g = GaugeMetricFamily("dispatcher_provider_state", "1 for the state each provider is in",
                              labels=["provider", "state"])
        for alias, s in sorted(monitor.lanes.items()):
            for state in STATES:
                g.add_metric([alias, state], 1.0 if s.state == state else 0.0)
        yield g
        yield _counter("dispatcher_provider_state_changes", "Provider state changes, by state entered",
                       ["provider", "state"], monitor.changes)
    return collect


def webhooks_metrics(w: Webhooks) -> Collect:
    def collect() -> Iterator[Metric]:
        yield GaugeMetricFamily("dispatcher_webhook_backlog", "Events not delivered yet (sampled)", value=w.backlog)
        yield GaugeMetricFamily("dispatcher_webhook_oldest_seconds", "Age of the oldest undelivered event (sampled)",
                                value=w.oldest_age)
        yield CounterMetricFamily("dispatcher_webhook_events_delivered", "Events the receiver took (2xx)",
                                  value=w.delivered)
        yield CounterMetricFamily("dispatcher_webhook_events_given_up", "Events older than max_age, not delivered",
                                  value=w.given_up)
        yield _counter("dispatcher_webhook_posts", "Webhook POSTs by result", ["result"], w.posts)
    return collect


def api_metrics(a: Api) -> Collect:
    def collect() -> Iterator[Metric]:
        yield _counter("dispatcher_api_requests", "API requests by route and status", ["route", "status"],
                       a.requests)
        c = CounterMetricFamily("dispatcher_api_messages", "Messages posted, queued or already stored",
                                labels=["outcome"])
        c.add_metric(["queued"], a.accepted)
        c.add_metric(["duplicate"], a.duplicates)
        yield c
    return collect


# -- serving ----------------------------------------------------------------------------------------------
class _Collector:
    """prometheus-client's custom-collector protocol over the components' collectors."""

    def __init__(self, collectors: Sequence[Collect]) -> None:
        self.collectors = tuple(collectors)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c()


def heartbeat_age(registry: WorkerRegistry) -> float | None:
    """Seconds since this worker's last answered heartbeat (None before the first), for /healthz."""
    return round(time.monotonic() - registry.last_ok, 3) if registry.last_ok else None


def routes(collectors: Sequence[Collect], health: Health) -> list[web.RouteDef]:
    """/metrics from `collectors`; /healthz answers `health()`'s document, 200 when serving, else 503."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collectors))  # type: ignore[arg-type]

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok, info = health()
        return web.json_response(info, status=200 if ok else 503)

    return [web.get("/metrics", metrics), web.get("/healthz", healthz)]
