"""What a run is: the settings and parts the engine takes, built and validated by config.py (a blast)
or by the daemon. Its own module so that the engine's core and the preparers both read it without
importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Content
from ..providers.base import Provider
from ..sinks.base import Sink
from ..sources.base import Part, Source

Router = Callable[[dict[str, Any]], str]


@dataclass
class Campaign:
    """Everything a run needs, built and validated by config.py (or the daemon)."""

    run_id: str
    source: Source
    sinks: list[Sink]
    providers: dict[str, Provider]
    contents: dict[str, Content]  # by channel
    channels: dict[str, str]  # provider alias -> the channel it carries in this campaign
    route: Router  # record fields -> provider alias
    recipient: str = "phone"
    id_column: str = ""
    region: str | None = None
    transliterate: bool = False
    gsm_pt: bool = False
    chunk_size: int = 2048
    max_in_flight: int = 0  # 0: derived from the lanes' concurrency and batch sizes
    on_doubt: str = "resend"  # or "hold"
    state_dir: Path | None = Path(".dispatcher")  # None: no journal (the daemon's leases do that job)
    dry_run: bool = False
    retry_of: tuple[str, Sink] | None = None  # (run id, its primary sink): send only that run's failed records
    allow_changed: bool = False  # resume although the source or the message changed
    stop_when_halted: bool = True  # stop reading once every provider halted (the daemon waits instead)
    defer_transient: bool = False  # retries that run out defer the record (the daemon reschedules its row)
    origin: dict[str, Any] = field(default_factory=dict)  # what the run was started as (campaign file, overrides)
    workers: int = 1  # processes that share the run (engine.workers): see dispatcher/blast/multiprocess.py
    part: Part | None = None  # in a worker: the part of the source it reads

    @property
    def share(self) -> float:
        """This process's part of every provider's rate and concurrency: a worker's, 1/N."""
        return 1.0 / self.part.of if self.part is not None else 1.0
