"""A run's memory across restarts: which records are finished, and which were on the wire.

Finished records come from the primary sink (its results are the truth). Before each
request the engine appends the batch's `seq`s to a journal; a record in the journal with
no result was in flight when the run died, so the provider may or may not have accepted
it: it is "in doubt". A resumed run resends those (at-least-once, the default) or holds
them as `failed` with code `in_doubt` (at-most-once), and says how many in its summary.

One process runs a run at a time: a second `blast` of the same run id while the first is
still going would send its records again. The run's lock file (`flock`, released by the
kernel when the process dies, SIGKILL included) refuses it. A run with several workers
(engine.workers) is still one run: its first process holds the lock, and each worker it forks
keeps a journal of its own (`journal.K`, so no two processes append to one file); a resume
reads them all.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import RunError

_DENSE_LIMIT = 1 << 27  # seqs below this live in a bytearray (1 byte each); beyond, in a set


class SeqSet:
    """A set of non-negative ints, dense for line numbers, sparse for large ids."""

    def __init__(self) -> None:
        self._dense = bytearray()
        self._sparse: set[int] = set()
        self.count = 0

    def add(self, seq: int) -> None:
        if 0 <= seq < _DENSE_LIMIT:
            d = self._dense
            if seq >= len(d):
                d.extend(bytes(max(seq + 1 - len(d), len(d))))
            if not d[seq]:
                d[seq] = 1
                self.count += 1
        elif seq not in self._sparse:
            self._sparse.add(seq)
            self.count += 1

    def discard(self, seq: int) -> None:
        if 0 <= seq < _DENSE_LIMIT:
            if seq < len(self._dense) and self._dense[seq]:
                self._dense[seq] = 0
                self.count -= 1
        elif seq in self._sparse:
            self._sparse.remove(seq)
            self.count -= 1

    def merge(self, other: SeqSet) -> None:
        """Every seq of `other` added: the dense parts OR-ed a vector at a time (a journal of millions)."""
        if not other.count:
            return
        if not self.count:
            self._dense, self._sparse, self.count = bytearray(other._dense), set(other._sparse), other.count
            return
        if len(self._dense) < len(other._dense):
            self._dense.extend(bytes(len(other._dense) - len(self._dense)))
        mine = np.frombuffer(self._dense, dtype=np.uint8)
        mine[:len(other._dense)] |= np.frombuffer(other._dense, dtype=np.uint8)
        self._sparse |= other._sparse
        self.count = int(np.count_nonzero(mine)) + len(self._sparse)

    def update(self, seqs: Iterable[int]) -> None:
        for s in seqs:
            self.add(s)

    def __contains__(self, seq: int) -> bool:
        if 0 <= seq < _DENSE_LIMIT:
            return seq < len(self._dense) and self._dense[seq] == 1
        return seq in self._sparse

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for i, v in enumerate(self._dense):
            if v:
                yield i
        yield from self._sparse


def _ranges(seqs: list[int]) -> bytes:
    """`3-7,9-9,12-13` of a batch's seqs: batches are mostly consecutive lines, so the journal stays small."""
    if len(seqs) == 1:  # a one-message request: no run to find
        return b"%d\n" % seqs[0]
    start, end = seqs[0], seqs[-1]
    if end - start == len(seqs) - 1 and seqs == list(range(start, end + 1)):  # one run of lines, in order
        return b"%d-%d\n" % (start, end)
    from . import ranges  # numba: only once a batch is not one run

    return ranges.line(seqs)


def _parse(line: str) -> Iterable[int]:
    for part in line.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        yield from range(int(a), int(b or a) + 1)



def _describe_source(ident: dict[str, Any]) -> str:
    if "path" in ident:
        return f"{ident['path']} ({ident.get('size', '?')} bytes, modified {ident.get('modified', '?')})"
    return str(ident.get("statement") or ident.get("name") or ident)


def run_ids(root: str | Path) -> list[str]:
    """The ids of the runs kept under a state directory."""
    runs = Path(root) / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


class RunState:
    """The journal and the manifest of one run; with no root (the daemon, whose outbox leases do this job)
    it keeps nothing.

    The manifest (`run.json`) says what the run is a run of (its source's identity, a digest of its
    messages), what it retries, and one entry per attempt with its counts: a resume of another source
    or another message is refused before anything is sent, and `dispatcher runs` / `status` read it.
    """

    def __init__(self, root: str | Path | None, run_id: str) -> None:
        self.run_id = run_id
        self.dir = Path(root) / "runs" / run_id if root is not None else None
        self.journal_path = self.dir / "journal" if self.dir is not None else None
        self.manifest_path = self.dir / "run.json" if self.dir is not None else None
        self.resuming = any(p.exists() for p in self.journals())
        self.manifest: dict[str, Any] | None = self._read_manifest()
        self._fd = -1
        self._lock_fd = -1

    def journals(self) -> list[Path]:
        """Every journal of the run: the one a single process keeps, and each worker's."""
        if self.dir is None or self.journal_path is None:
            return []
        workers = sorted(self.dir.glob("journal.*"), key=lambda p: p.suffix) if self.dir.is_dir() else []
        return [self.journal_path, *(p for p in workers if p.suffix[1:].isdigit())]

    @property
    def exists(self) -> bool:
        return self.resuming or self.manifest is not None

    def _read_manifest(self) -> dict[str, Any] | None:
        if self.manifest_path is None or not self.manifest_path.exists():
            return None
        try:
            return orjson.loads(self.manifest_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def _write_manifest(self) -> None:
        if self.manifest_path is None or self.manifest is None:
            return
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.manifest, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.manifest_path)

    def begin(self, identity: dict[str, Any], *, allow_changed: bool = False, retry_of: str | None = None,
              origin: dict[str, Any] | None = None) -> None:
        """Check that a resume is a resume of the same thing, then note the attempt. Raises RunError."""
        if self.dir is None:
            return
        m = self.manifest
        if m is not None and not allow_changed:
            was, now = m.get("identity", {}), identity
            if was.get("source") != now.get("source"):
                raise RunError(f"run '{self.run_id}' is a run of {_describe_source(was.get('source', {}))}, not of "
                               f"{_describe_source(now.get('source', {}))}: refusing to resume it with another "
                               f"source (start a new --run-id, or pass --allow-changed if it is the same audience)")
            if was.get("message") != now.get("message"):
                raise RunError(f"run '{self.run_id}' was started with other messages or providers (the campaign's "
                               f"templates, senders or providers changed): refusing to resume it (start a new "
                               f"--run-id, or pass --allow-changed to resume with the new ones)")
        if m is None:
            m = self.manifest = {"run_id": self.run_id, "created": time.time(), "identity": identity,
                                 "retry_of": retry_of, "origin": origin or {}, "attempts": []}
        else:
            m["identity"] = identity
            m["origin"] = {**m.get("origin", {}), **(origin or {})}  # the latest overrides: what a resume repeats
        m["attempts"].append({"started": time.time(), "ended": None, "counts": None})
        self._write_manifest()

    def end(self, counts: dict[str, Any]) -> None:
        """Note how the attempt ended."""
        if self.manifest is None or not self.manifest.get("attempts"):
            return
        self.manifest["attempts"][-1].update(ended=time.time(), counts=counts)
        self._write_manifest()

    def source_identity(self) -> dict[str, Any] | None:
        return (self.manifest or {}).get("identity", {}).get("source")

    def lock(self) -> None:
        """Take the run for this process; RunError when another process holds it (a run still going)."""
        if self.dir is None or self._lock_fd >= 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunError(f"run '{self.run_id}' is running in another process (it holds {path}): a second run of "
                           f"it at once would send its records again; wait for it to end, or stop it, then resume "
                           f"it") from None
        self._lock_fd = fd

    def open(self, worker: int | None = None) -> None:
        """The journal opened for appending: the run's own, taking its lock; or, for `worker` K of a run
        whose first process holds the lock (it forked this one), `journal.K`."""
        if self.dir is None or self.journal_path is None:
            return
        if worker is None:
            self.lock()
        path = self.journal_path if worker is None else self.journal_path.with_name(f"journal.{worker}")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def sending(self, seqs: list[int]) -> None:
        """Note a batch as on the wire, before its request leaves."""
        if self._fd >= 0:
            os.write(self._fd, _ranges(seqs))

    def cleared(self, seqs: list[int]) -> None:
        """Note records known not to have been accepted (a stopped run's pending retries)."""
        if seqs and self._fd >= 0:
            os.write(self._fd, b"-" + _ranges(sorted(set(seqs))))

    def attempted(self) -> SeqSet:
        """Records some journal notes as sent and not cleared since (each journal read on its own: a
        clear in one says nothing of a request another process made)."""
        out = SeqSet()
        for path in self.journals():
            if not path.exists():
                continue
            mine = SeqSet()
            with open(path, encoding="ascii", errors="replace") as f:
                for line in f:
                    if not line.endswith("\n"):
                        continue  # a torn line from a killed run: it was never acted on
                    try:
                        if line.startswith("-"):
                            for s in _parse(line[1:]):
                                mine.discard(s)
                        else:
                            mine.update(_parse(line))
                    except ValueError:
                        continue
            out.merge(mine)
        return out

    def close(self) -> None:
        """The journal closed, the run let go."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the file releases its flock
            self._lock_fd = -1
