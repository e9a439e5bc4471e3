"""Blast throughput beside a bare aiohttp loop sending the same requests to the same simulator.

- batched: 360nrs, 1000 recipients a request, CSV in, JSONL out (goal: 100,000 msg/s on one core);
- single: 360nrs with one recipient a request (goal: 0.8x the bare loop's requests/s).
The simulator runs in its own process with no rate limit and no ledger, so it is the same
ceiling for both. The bare loop's requests are built beforehand by the adapter itself, so
the two send byte-for-byte the same requests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, audience, build_requests, median_of, simulator

TEMPLATE = "Hola {name}, tu factura de {amount} EUR ya esta disponible. Responde STOP para no recibir mas."


def write_campaign(tmp: Path, url: str, csv: Path, batch: int, concurrency: int) -> Path:
    toml = tmp / f"bench-{batch}.toml"
    toml.write_text(f"""
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


def run_blast(toml: Path, run_id: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "dispatcher", "blast", str(toml), "--quiet", "--json",
                           "--run-id", run_id], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"blast failed: {done.stderr[-2000:]}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def run_bare(requests: Path, concurrency: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bare.py"), str(requests), str(concurrency)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return orjson.loads(done.stdout)


def run_wrk(requests: Path, concurrency: int, seconds: int = 5) -> float | None:
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


def scenario(name: str, n: int, batch: int, concurrency: int, reps: int, tmp: Path) -> dict[str, Any]:
    csv = audience(tmp / f"audience-{n}.csv", n)
    with simulator("nrs360", "--rate", "nrs360=1000000000") as url:
        toml = write_campaign(tmp, url, csv, batch, concurrency)
        reqfile = tmp / f"requests-{name}.jsonl"
        n_requests = build_requests(toml, reqfile)
        counter = iter(range(1000))
        runs: list[dict[str, Any]] = []

        def one_blast() -> float:
            out = run_blast(toml, f"{name}-{next(counter)}")
            runs.append(out)
            return out["msgs_per_s"]

        bare_runs: list[dict[str, Any]] = []

        def one_bare() -> float:
            out = run_bare(reqfile, concurrency)
            bare_runs.append(out)
            return out["requests"] / out["seconds"]

        blast_mps, blast_all = median_of(reps, one_blast)
        bare_rps, bare_all = median_of(reps, one_bare)
        wrk_rps = run_wrk(reqfile, concurrency)
    msgs_per_request = n / n_requests
    blast_rps = blast_mps / msgs_per_request
    return {
        "scenario": name, "messages": n, "batch_size": batch, "concurrency": concurrency, "requests": n_requests,
        "dispatcher_msgs_per_s": round(blast_mps), "dispatcher_requests_per_s": round(blast_rps, 1),
        "bare_requests_per_s": round(bare_rps, 1), "bare_msgs_per_s": round(bare_rps * msgs_per_request),
        "ratio": round(blast_rps / bare_rps, 3), "repetitions": reps,
        "wrk_requests_per_s": round(wrk_rps, 1) if wrk_rps else None,
        "dispatcher_runs_msgs_per_s": [round(x) for x in blast_all], "bare_runs_requests_per_s": [round(x) for x in bare_all],
        "bare_statuses": bare_runs[-1]["statuses"] if bare_runs else {},
        "sent": runs[-1]["sent"] if runs else 0,
        "timeline": runs[-1].get("timeline", []) if runs else [],
        "latency_ms_sample": latency_sample(tmp / "out" / f"{runs[-1]['run_id']}.jsonl") if runs else [],
    }


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
    with tempfile.TemporaryDirectory(prefix="bench-blast-") as d:
        tmp = Path(d)
        reps = 1 if quick else 3
        batched = scenario("batched", 50_000 if quick else 1_000_000, 1000, 4, reps, tmp)
        single = scenario("single", 3_000 if quick else 100_000, 1, 64, reps, tmp)
    return {"batched": batched, "single": single}


def table(r: dict[str, Any]) -> str:
    rows = ["| scenario | messages | dispatcher msg/s | dispatcher req/s | bare loop req/s | ratio (req/s) "
            "| wrk req/s (server ceiling) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k in ("batched", "single"):
        s = r[k]
        wrk = f"{s['wrk_requests_per_s']:,}" if s.get("wrk_requests_per_s") else "not installed"
        rows.append(f"| 360nrs {k} ({s['batch_size']}/request) | {s['messages']:,} | {s['dispatcher_msgs_per_s']:,} | "
                    f"{s['dispatcher_requests_per_s']:,} | {s['bare_requests_per_s']:,} | {s['ratio']:.2f}x | {wrk} |")
    return "\n".join(rows)


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(table(result))
