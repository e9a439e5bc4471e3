"""The engine's Sink for the outbox: each result onto its row, one statement a write, while the row is
still claimed by this worker; counts kept for /metrics."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import Metric

from ...errors import SinkError
from ...model import Results
from ...pg import RETRY, Retry, explain, retrying
from ...sinks.base import Sink
from ..config import DaemonConfig
from ..database import Connections
from ..histogram import LATENCY_BUCKETS, QUEUE_BUCKETS, Histogram
from ..metrics import counter, histogram
from .store import OutboxQueries

log = logging.getLogger("dispatcher.daemon")


class OutboxSink(Sink):
    """Results onto their outbox rows: one statement a write (queries.sql `record_results`: every row reached
    by its primary key from a jsonb array of results)."""

    name = "outbox"

    def __init__(self, cfg: DaemonConfig, pool: Connections, store: OutboxQueries, *,
                 on_write: Sequence[Callable[[], None]] = (), on_fatal: Sequence[Callable[[], None]] = ()) -> None:
        """`on_write` are told after each batch of results is written; `on_fatal` when results cannot be
        recorded (the daemon must stop)."""
        self.cfg = cfg
        self.pool = pool
        self.store = store
        self.results: Counter[tuple[str, str, str]] = Counter()  # (provider, status, code)
        self.request_latency: dict[str, Histogram] = {}
        self.queue_latency = Histogram(QUEUE_BUCKETS)  # insert -> provider accepted
        self.written = 0
        self.lost = 0  # results for rows no longer claimed by this worker (reclaimed after a lost heartbeat)
        self.on_write = tuple(on_write)
        self.on_fatal = tuple(on_fatal)

    def collect(self) -> Iterator[Metric]:
        """/metrics: the rows finished, and the two latencies."""
        yield counter("dispatcher_messages", "Outbox rows finished, by provider, status and code",
                      ["provider", "status", "code"], self.results)
        yield histogram("dispatcher_request_seconds", "Provider answer time, one observation a request",
                        ["provider"], [([p], h) for p, h in sorted(self.request_latency.items())])
        yield histogram("dispatcher_queue_seconds", "From insert to accepted by the provider, per sent row", [],
                        [([], self.queue_latency)])

    async def write(self, results: Results) -> None:
        col = results.column
        seqs, providers, latencies = col("seq"), col("provider"), col("latency_ms")
        rows = await self._update([  # the connections' jsonb codec is orjson
            list(r) for r in zip(seqs, col("status"), providers, col("to"), col("message_id"), col("parts"),
                                 col("code"), col("error"), latencies, col("meta"), strict=True)])
        counts = self.results
        q = self.queue_latency
        written = 0
        for provider, status, code, bucket, n, age in rows:
            counts[(provider, status, code)] += n
            written += n
            if bucket is not None:
                q.counts[bucket] += n
                q.count += n
                q.sum += age
        self.written += written
        if written < len(results):
            self.lost += len(results) - written
            log.warning("%d results for rows this worker no longer holds (its claims were taken back)",
                        len(results) - written)
        for provider, ms in set(zip(providers, latencies, strict=True)):  # one observation a request
            if ms is None:
                continue
            h = self.request_latency.get(provider)
            if h is None:
                h = self.request_latency[provider] = Histogram(LATENCY_BUCKETS)
            h.observe(ms / 1000)
        for cb in self.on_write:
            cb()

    async def _update(self, payload: list[list[Any]]) -> list[Any]:
        async def attempt(n: int) -> list[Any]:
            async with self.pool.acquire() as conn:
                return await conn.fetch(self.store.sql["record_results"], self.cfg.worker, payload, QUEUE_BUCKETS)

        async def failed(e: BaseException, n: int, final: bool) -> None:
            if not final:
                log.warning("recording results failed (%s); retrying", explain(e, self.cfg.dsn))
                return
            for cb in self.on_fatal:
                cb()
            raise SinkError(f"outbox: cannot record results: {explain(e, self.cfg.dsn)}") from None

        return await retrying(attempt, retry=Retry(RETRY.attempts + 3, RETRY.base, RETRY.cap), failed=failed)
