"""The engine: a thin public surface over its parts (ledger, lanes, preparers, transport).

`Engine` runs a `Campaign` (`run`, or its three steps `begin`, `send`, `end`, which a run shared by
worker processes takes in different processes); its owner drives it through `stop`, `snapshot`,
`halted`, `revive`, `flush_idle`, `set_share`, `room` and `close`, and hears from it through `Events`.
"""

from .answers import describe
from .campaign import Campaign, Router
from .core import Engine, Start, collector_for_streams, counts, dry_run, identity
from .lane import CIRCUIT_OPEN, HALTED, SENDING, THROTTLED
from .ledger import Events, Stats
from .prepare import CampaignPreparer, Encoder, Prepared, Preparer
from .status import LaneState, LaneStatus
from .transport import HttpTransport, Transport, TransportFactory, http_transport

__all__ = [
           "CIRCUIT_OPEN",
           "HALTED",
           "SENDING",
           "THROTTLED",
           "Campaign",
           "CampaignPreparer",
           "Encoder",
           "Engine",
           "Events",
           "HttpTransport",
           "LaneState",
           "LaneStatus",
           "Prepared",
           "Preparer",
           "Router",
           "Start",
           "Stats",
           "Transport",
           "TransportFactory",
           "collector_for_streams",
           "counts",
           "describe",
           "dry_run",
           "http_transport",
           "identity",
]
