"""What a run is to the engine: `RunSpec`, the settings and parts every run has, whoever builds it (a blast's
`Campaign` extends it with its messages; the daemon fills it for its outbox). Its own module so that the
engine's core and the preparers both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..providers.base import Provider
from ..sinks.base import Sink
from ..sources.base import CHUNK_SIZE, Part, Source


@dataclass(kw_only=True)
class RunSpec:
    """Everything the engine needs of a run: where records come from and results go, the providers, and
    how the run behaves at its edges (resume, doubt, halts). What a record becomes (templates, routing,
    recipients) is the preparer's, which the engine takes beside it."""

    run_id: str
    source: Source
    sinks: list[Sink]
    providers: dict[str, Provider]
    channels: dict[str, str]  # provider alias -> the channel it carries in this run
    chunk_size: int = CHUNK_SIZE
    max_in_flight: int = 0  # 0: derived from the lanes' concurrency and batch sizes
    on_doubt: str = "resend"  # or "hold"
    state_dir: Path | None = Path(".dispatcher")  # None: no journal (the daemon's leases do that job)
    retry_of: tuple[str, Sink] | None = None  # (run id, its primary sink): send only that run's failed records
    allow_changed: bool = False  # resume although the source or the message changed
    stop_when_halted: bool = True  # stop reading once every provider halted (the daemon waits instead)
    defer_transient: bool = False  # retries that run out defer the record (the daemon reschedules its row)
    origin: dict[str, Any] = field(default_factory=dict)  # what the run was started as (campaign file, overrides)
    processes: int = 1  # processes that share the run ([engine] workers, --workers): blast/multiprocess.py
    part: Part | None = None  # in a worker: the part of the source it reads

    @property
    def share(self) -> float:
        """This process's part of every provider's rate and concurrency: a worker's, 1/N."""
        return 1.0 / self.part.of if self.part is not None else 1.0
