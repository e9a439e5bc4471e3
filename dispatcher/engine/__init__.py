"""The engine: a thin public surface over its parts (ledger, lanes, preparers, transport).

`Engine` runs a `RunSpec` with a `Preparer` (`run`, or its three steps `begin`, `send`, `end`, which a run shared by
worker processes takes in different processes); its owner drives it through `stop`, `snapshot`,
`halted`, `revive`, `flush_idle`, `set_share`, `room` and `close`, and hears from it through `Events`.
"""

from .answers import describe
from .core import Engine, Start, collector_for_streams, counts, identity
from .lane import CIRCUIT_OPEN, HALTED, SENDING, THROTTLED
from .ledger import Events, Stats
from .prepare import Encoder, Prepared, Preparer
from .spec import RunSpec
from .status import LaneState, LaneStatus
from .transport import HttpTransport, Transport, TransportFactory, http_transport

__all__ = [
           "CIRCUIT_OPEN",
           "HALTED",
           "SENDING",
           "THROTTLED",
           "Encoder",
           "Engine",
           "Events",
           "HttpTransport",
           "LaneState",
           "LaneStatus",
           "Prepared",
           "Preparer",
           "RunSpec",
           "Start",
           "Stats",
           "Transport",
           "TransportFactory",
           "collector_for_streams",
           "counts",
           "describe",
           "http_transport",
           "identity",
]
