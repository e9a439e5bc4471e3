"""`/metrics` (Prometheus text, prometheus-client) and `/healthz`.

Nothing is counted on the hot path for Prometheus' sake: at scrape time, each component's own
`collect()` (`OutboxSink.collect`, `WorkerRegistry.collect`, ...) reads what that component keeps
anyway; the engine, which names none of its callers, is read by `engine_metrics(engine)` here.
`routes(collectors, health)` serves them and the health report it is given; it imports no component
and holds no Daemon (the daemon picks its components' collectors). The table is every metric served:

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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..engine import Engine
from .histogram import Histogram

Collect = Callable[[], Iterable[Metric]]  # one component's metrics, read at scrape time
Health = Callable[[], tuple[bool, dict[str, Any]]]  # (serving, the /healthz document)


def counter(name: str, doc: str, labels: list[str], counts: Mapping[Any, float]) -> Metric:
    """A labelled counter from a mapping of label tuple (or one label) to count, in label order."""
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(counts.items()):
        fam.add_metric([str(k) for k in key] if isinstance(key, tuple) else [str(key)], n)
    return fam


def histogram(name: str, doc: str, labels: list[str], series: list[tuple[list[str], Histogram]]) -> Metric:
    """A labelled histogram from (label values, Histogram) pairs: the buckets cumulative, as Prometheus has them."""
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in series:
        buckets, seen = [], 0
        for le, c in zip((*h.buckets, float("inf")), h.counts, strict=True):
            seen += c
            buckets.append(("+Inf" if le == float("inf") else repr(float(le)), seen))
        fam.add_metric(values, buckets, h.sum)
    return fam


def engine_metrics(engine: Engine) -> Collect:
    """The engine's collector: in flight, each lane's pace and 429s, the retries."""
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
