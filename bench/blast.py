"""Blast throughput beside a bare aiohttp loop sending the same requests, against two servers in turn.

- batched: 360nrs, 1000 recipients a request, CSV in, JSONL out (goal: 0.5x the csv -> orjson floor on the
  same file, bench/floor.py, in one process), with the engine's CPU a message (its own process, from getrusage);
- single: 360nrs with one recipient a request, 64 in flight (goal: 0.8x the bare loop's requests/s).
Each is measured against the fast upstream (bench/upstream.py: the engine's ceiling, since that server is
far faster than either side) and against the simulator (fidelity: the real API's checks, but a server that
answers only a few thousand requests a second, so it bounds both sides there). Each server runs in its own
process (one for every kind a scenario needs) with no rate limit and no ledger. The bare loop's requests are built beforehand by the adapter
itself, so the two send byte-for-byte the same requests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from bench.common import ROOT, SERVERS, audience, build_requests, median_of

WORKERS = max(2, os.cpu_count() or 2)  # the shared runs: a worker a core (engine.workers)
TEMPLATE = "Hola {name}, tu factura de {amount} EUR ya esta disponible. Responde STOP para no recibir mas."


def write_campaign(tmp: Path, url: str, csv: Path, batch: int, concurrency: int, name: str = "",
                   workers: int = 1) -> Path:
    toml = tmp / f"bench-{name or batch}.toml"
    toml.write_text(f"""
[engine]
workers = {workers}

[source]
path = "{csv}"
recipient = "phone"
id = "id"

[message]
sender = "ACME"
region = "ES"
template = "{TEMPLATE}"

[providers.sms]
type = "nrs360"
url = "{url}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
rate = 1000000
batch_size = {batch}
concurrency = {concurrency}

[[sinks]]
type = "jsonl"
path = "{tmp}/out/{{run_id}}.jsonl"
""")
    return toml


def blast_args(toml: Path, run_id: str, source: Path | None = None) -> list[str]:
    return ["blast", str(toml), "--quiet", "--json", "--run-id", run_id, *(("--source", str(source)) if source else ())]


def run_many(runs: list[list[str]], timeout: float = 1800) -> tuple[list[dict[str, Any]], int]:
    """Several CLI runs in one process (bench/runner.py): each run's summary with the CPU seconds of its own
    call (`cpu_s`) and what the process had used before it (`before_cpu_s`); and the process's peak RSS (kB)."""
    done = subprocess.run([sys.executable, "-m", "bench.runner", orjson.dumps(runs).decode()],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    lines = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 1) or len(lines) != len(runs) + 1:
        raise RuntimeError(f"blast failed ({done.returncode}): {done.stderr[-2000:]}")
    out = []
    for line in lines[:-1]:
        if line["code"] not in (0, 1) or not isinstance(line["summary"], dict):
            raise RuntimeError(f"blast failed ({line['code']}): {done.stderr[-2000:]}")
        out.append({**line["summary"], "cpu_s": line["cpu_s"], "before_cpu_s": line["before_cpu_s"]})
    return out, lines[-1]["vmhwm_kb"]


def run_blast(toml: Path, run_id: str, source: Path | None = None, warm: Path | None = None) -> dict[str, Any]:
    """One `dispatcher blast` in its own process; its summary, with the CPU seconds of the run itself
    (`cpu_s`, start-up left out). With `warm` (a small CSV, see `head`), a run of it comes first in the same
    process, so `cpu_s` also leaves out what a first run pays once (kernels, metadata, first connection)
    and `before_cpu_s` is that fixed cost with the interpreter's start-up."""
    runs = ([blast_args(toml, f"{run_id}-warm", warm)] if warm else []) + [blast_args(toml, run_id, source)]
    return run_many(runs)[0][-1]


def run_bare(runs: list[tuple[Path, int]]) -> list[dict[str, Any]]:
    """The bare loop over each (requests file, concurrency) in turn, all in one process (bench/bare.py):
    each run's figures, with its own CPU (`cpu_s`, the interpreter's start-up left out)."""
    args = [str(a) for path, concurrency in runs for a in (path, concurrency)]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bare.py"), *args],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run_floor(csv: Path, out: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "floor.py"), str(csv), str(out)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    out.unlink(missing_ok=True)
    return orjson.loads(done.stdout)


def run_wrk(requests: Path, concurrency: int, seconds: int) -> float | None:
    """The HTTP server's ceiling: wrk replaying the first request, when wrk is installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with open(requests, "rb") as f:
        first = orjson.loads(f.readline())
    script = requests.with_suffix(".lua")
    headers = "".join(f"wrk.headers[{orjson.dumps(k).decode()}] = {orjson.dumps(v).decode()}\n"
                      for k, v in first["headers"].items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = {orjson.dumps(first["body"]).decode()}\n{headers}')
    done = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), first["url"]],
                          capture_output=True, text=True, timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def head(csv: Path, rows: int = 1) -> Path:
    """The header and first rows of a CSV: a run of it costs what a run costs besides its messages."""
    path = csv.with_name(f"{csv.stem}-head{rows}.csv")
    with open(csv, "rb") as f, open(path, "wb") as out:
        for _ in range(rows + 1):
            out.write(f.readline())
    return path


class Job(NamedTuple):
    """One campaign measured by `against`: `campaign(url)` writes its TOML (reading `source`, `n` rows)."""
    kind: str
    name: str
    source: Path
    n: int
    concurrency: int
    campaign: Callable[[str], Path]
    workers: int = 1


def against(jobs: list[Job], reps: int, tmp: Path, latency_ms: float = 0,
            wrk_seconds: int = 0) -> list[dict[str, dict[str, Any]]]:
    """Each job's dispatcher (median of `reps` runs) beside the bare loop (same requests, same concurrency)
    against each server of SERVERS, one of each kind up for every job; wrk measures each server's own ceiling
    for `wrk_seconds`. Returns {server: figures} for each job, in order.

    A repetition is one blast process (bench/runner.py) that runs, for each job in turn, one recipient first
    (the codec's kernels loaded, metadata read, first connection made), then the measured run against each
    server, each one's CPU read around its own call: the engine's CPU a message leaves out what a run costs
    besides its messages (interpreter, imports, that warm-up), and the interpreter starts once a repetition,
    not twice a server and job (that was most of a quick run's time)."""
    with contextlib.ExitStack() as stack:
        tomls: list[dict[str, Path]] = []
        reqfiles: list[dict[str, Path]] = []
        n_requests: list[dict[str, int]] = []
        kinds = list(dict.fromkeys(job.kind for job in jobs))  # one process a server: the jobs run one after another
        urls = {server: stack.enter_context(SERVERS[server](kinds, latency_ms)) for server in SERVERS}
        built: dict[tuple[str, str], tuple[Path, int]] = {}  # a job with workers sends its one-process twin's requests
        for job in jobs:
            tomls.append({})
            reqfiles.append({})
            n_requests.append({})
            for server in SERVERS:
                url = urls[server][job.kind]
                first = job.campaign(url)
                tomls[-1][server] = toml = first.rename(first.with_name(f"{first.stem}-{server}.toml"))
                same = (server, re.sub(r"(?m)^workers = \d+$", "", toml.read_text()))
                if same not in built:
                    path = tmp / f"requests-{job.name}-{server}.jsonl"
                    built[same] = (path, build_requests(toml, path))
                reqfiles[-1][server], n_requests[-1][server] = built[same]
        warm = [head(job.source) for job in jobs]
        runs: list[dict[str, list[dict[str, Any]]]] = [{server: [] for server in SERVERS} for _ in jobs]
        for rep in range(reps):
            args = []
            for j, job in enumerate(jobs):
                args.append(blast_args(tomls[j][next(iter(SERVERS))], f"{job.name}-warm-{rep}", warm[j]))
                args += [blast_args(tomls[j][server], f"{job.name}-{server}-{rep}") for server in SERVERS]
            outs = iter(run_many(args)[0])
            for j in range(len(jobs)):
                next(outs)  # the warm-up run
                for server in SERVERS:
                    if runs[j][server]:  # the last run's results are kept for its latencies; the others cost disk
                        (tmp / "out" / f"{runs[j][server][-1]['run_id']}.jsonl").unlink(missing_ok=True)
                    runs[j][server].append(next(outs))
        bare_runs: list[dict[str, list[dict[str, Any]]]] = [{server: [] for server in SERVERS} for _ in jobs]
        loops = list(dict.fromkeys((reqfiles[j][server], job.concurrency) for j, job in enumerate(jobs)
                                   for server in SERVERS))  # the same requests at the same concurrency: one loop
        for _ in range(reps):  # a repetition's bare loops in one process, as its blasts (one interpreter start)
            got = dict(zip(loops, run_bare(loops), strict=True))
            for j, job in enumerate(jobs):
                for server in SERVERS:
                    bare_runs[j][server].append(got[(reqfiles[j][server], job.concurrency)])
        wrk = [{server: run_wrk(reqfiles[j][server], job.concurrency, wrk_seconds) if wrk_seconds else None
                for server in SERVERS} for j, job in enumerate(jobs)]
    return [{server: _figures(server, job.n, job.concurrency, reps, n_requests[j][server], runs[j][server],
                              bare_runs[j][server], wrk[j][server], tmp) for server in SERVERS}
            for j, job in enumerate(jobs)]


def _figures(server: str, n: int, concurrency: int, reps: int, n_requests: int, runs: list[dict[str, Any]],
             bare_runs: list[dict[str, Any]], wrk_rps: float | None, tmp: Path) -> dict[str, Any]:
    """One server's side: medians of the dispatcher's and the bare loop's runs, the last run's latencies."""
    blast_all = [r["msgs_per_s"] for r in runs]
    bare_all = [r["requests"] / r["seconds"] for r in bare_runs]
    blast_mps, bare_rps = statistics.median(blast_all), statistics.median(bare_all)
    per_request = n / n_requests
    blast_rps = blast_mps / per_request
    last = tmp / "out" / f"{runs[-1]['run_id']}.jsonl"
    sample = latency_sample(last)
    last.unlink(missing_ok=True)
    return {
        "server": server, "messages": n, "concurrency": concurrency, "requests": n_requests,
        # what the dispatcher sent against ceil(n / batch_size) (the adapter's own full batches, as the bare loop)
        "dispatcher_requests": runs[-1].get("requests"), "ideal_requests": n_requests,
        "msgs_per_request": round(per_request, 1),
        "dispatcher_msgs_per_s": round(blast_mps), "dispatcher_requests_per_s": round(blast_rps, 1),
        "bare_requests_per_s": round(bare_rps, 1), "bare_msgs_per_s": round(bare_rps * per_request),
        "ratio": round(blast_rps / bare_rps, 3), "repetitions": reps,
        "cpu_us_per_msg": round(statistics.median(r["cpu_s"] for r in runs) / n * 1e6, 2),
        "run_fixed_cpu_s": round(statistics.median(r["before_cpu_s"] for r in runs), 3),
        "bare_cpu_us_per_msg": round(statistics.median(r["cpu_s"] for r in bare_runs) / n * 1e6, 2),  # its own run
        "wrk_requests_per_s": round(wrk_rps, 1) if wrk_rps else None,
        "dispatcher_runs_msgs_per_s": [round(x) for x in blast_all], "bare_runs_requests_per_s": [round(x) for x in bare_all],
        "bare_statuses": bare_runs[-1]["statuses"],
        "sent": runs[-1]["sent"], "timeline": runs[-1].get("timeline", []), "latency_ms_sample": sample,
    }


def scenario(name: str, n: int, batch: int, concurrency: int, tmp: Path, workers: int = 1) -> Job:
    """The 360nrs job of one path: `batch` recipients a request, `concurrency` requests in flight (in all,
    shared by `workers` processes)."""
    csv = audience(tmp / f"audience-{n}.csv", n)
    label = f"{name}-{batch}" + (f"-w{workers}" if workers > 1 else "")
    return Job("nrs360", label, csv, n, concurrency,
               lambda url: write_campaign(tmp, url, csv, batch, concurrency, name=label, workers=workers), workers)


def figures(job: Job, batch: int, sides: dict[str, dict[str, Any]], reps: int, tmp: Path,
            floor: bool) -> dict[str, Any]:
    """The simulator's figures stay at the top level (as before the upstream existed), the upstream's under
    "upstream", the floor beside them when asked."""
    result: dict[str, Any] = {"scenario": job.name, "batch_size": batch, "workers": job.workers,
                              **sides["simulator"], "upstream": sides["upstream"]}
    if floor:
        def one_floor() -> float:
            r = run_floor(job.source, tmp / "floor.jsonl")
            return r["rows"] / r["seconds"]

        rows_per_s, runs = median_of(reps, one_floor)
        result["floor_rows_per_s"] = round(rows_per_s)
        result["floor_runs_rows_per_s"] = [round(x) for x in runs]
        for side in (result, result["upstream"]):
            side["over_floor"] = round(side["dispatcher_msgs_per_s"] / rows_per_s, 3)
    return result


def latency_sample(path: Path, k: int = 5000) -> list[float]:
    """Request latencies from a results file (one per request: equal values of a batch counted once)."""
    seen: list[float] = []
    last = None
    with open(path, "rb") as f:
        for line in f:
            v = orjson.loads(line).get("latency_ms")
            if v is not None and v != last:
                seen.append(v)
                last = v
            if len(seen) >= k:
                break
    return seen


def run(quick: bool = False) -> dict[str, Any]:
    """Both paths, both servers, the upstream first in each repetition."""
    with tempfile.TemporaryDirectory(prefix="bench-blast-") as d:
        tmp = Path(d)
        reps = 1 if quick else 3
        wrk = 2 if quick else 5
        n_batched, n_single = (20_000, 1_500) if quick else (1_000_000, 100_000)
        jobs = [scenario("batched", n_batched, 1000, 4, tmp), scenario("single", n_single, 1, 64, tmp),
                scenario("batched", n_batched, 1000, 4, tmp, workers=WORKERS),
                scenario("single", n_single, 1, 64, tmp, workers=WORKERS)]
        b, s, bw, sw = against(jobs, reps, tmp, wrk_seconds=wrk)
        return {"batched": figures(jobs[0], 1000, b, reps, tmp, floor=True),
                "single": figures(jobs[1], 1, s, reps, tmp, floor=False),
                "batched_workers": figures(jobs[2], 1000, bw, reps, tmp, floor=True),
                "single_workers": figures(jobs[3], 1, sw, reps, tmp, floor=False)}


def table(r: dict[str, Any]) -> str:
    rows = ["| scenario | server | messages | dispatcher msg/s | dispatcher req/s | bare loop req/s | ratio (req/s) "
            "| dispatcher / floor | engine CPU us/msg | wrk req/s (server ceiling) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ("batched", "single", "batched_workers", "single_workers"):
        if k not in r:
            continue
        path = k.split("_")[0]
        who = f", {r[k]['workers']} workers" if r[k].get("workers", 1) > 1 else ", 1 process"
        for s in (r[k]["upstream"], r[k]):
            wrk = f"{s['wrk_requests_per_s']:,}" if s.get("wrk_requests_per_s") else "not installed"
            floor = f"{s['over_floor']:.2f}x" if "over_floor" in s else "-"
            rows.append(f"| 360nrs {path} ({r[k]['batch_size']}/request{who}) | {s['server']} | {s['messages']:,} | "
                        f"{s['dispatcher_msgs_per_s']:,} | {s['dispatcher_requests_per_s']:,} | "
                        f"{s['bare_requests_per_s']:,} | {s['ratio']:.2f}x | {floor} | {s['cpu_us_per_msg']} | {wrk} |")
    b = r["batched"]
    rows.append(f"\nFloor (`csv.reader` -> `orjson.dumps` of a 4-field result -> file, same CSV): "
                f"{b['floor_rows_per_s']:,} rows/s, one process (goal: the dispatcher in one process at 0.5x of it against the "
                "upstream). The workers rows are one run shared by a process a core (`[engine] workers`); the bare "
                "loop is one process at the same concurrency in all, and the CPU a message adds up every process. "
                "The upstream is the engine's ceiling; the simulator bounds both sides at its own few thousand "
                "requests/s (fidelity). Medians of the runs; a shared machine makes them noisy.")
    return "\n".join(rows)


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
