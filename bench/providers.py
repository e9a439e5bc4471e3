"""Every provider: messages/s and requests/s of the dispatcher beside a bare aiohttp loop sending the
same requests (built by the adapter itself) to the same simulator, in one run. And rate precision:
the achieved rate against Sendix's strict 100 requests/s over 30 s, with the count of 429s."""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tomli_w

from bench.blast import Job, against, run_blast
from bench.common import sim_stats, simulator

PROVIDERS: dict[str, dict[str, Any]] = {
    "nrs360": {"settings": {"username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD", "batch_size": 1000,
                            "concurrency": 4},
               "message": {"channel": "sms", "sender": "ACME", "template": "Hola {name}, tu saldo es {amount}"}},
    "kaleyra": {"settings": {"sid_env": "KALEYRA_SID", "api_key_env": "KALEYRA_API_KEY", "concurrency": 16},
                "message": {"channel": "sms", "sender": "KLRHXA", "template": "Your balance is updated",
                            "options": {"type": "TXN"}}},
    "smsgateway24": {"settings": {"email_env": "SMSGATEWAY24_EMAIL", "password_env": "SMSGATEWAY24_PASSWORD",
                                  "concurrency": 4},
                     "message": {"channel": "sms", "template": "Hola {name}", "options": {"device_id": 260}}},
    "sendix": {"settings": {"username_env": "SENDIX_USER", "password_env": "SENDIX_PASSWORD", "channel": "whatsapp",
                            "concurrency": 64},
               "message": {"channel": "whatsapp", "template": "Hola {name}, {amount}",
                           "options": {"template_name": "promo", "language": "es", "parameters": ["name", "amount"]}}},
    "sendx": {"settings": {"api_key_env": "SENDX_API_KEY", "channel": "email", "concurrency": 64},
              "message": {"channel": "email", "sender": "news@example.com", "subject": "Hello", "recipient": "email",
                          "template": "<p>Hi {name}</p>", "options": {"from_name": "ACME"}}},
}




def audience(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        f.write("id,phone,email,name,amount\n")
        for i in range(1, n + 1):
            f.write(f"r{i},+3463{i:07d},user{i}@example.com,name{i},{i}.25\n")
    return path


def campaign(tmp: Path, kind: str, url: str, csv: Path, rate: float) -> Path:
    spec = PROVIDERS[kind]
    msg = dict(spec["message"])
    channel = msg.pop("channel")
    msg = {"region": "ES", **msg}
    section = {"message": msg} if channel == "sms" else {"messages": {channel: msg}}
    doc = {"source": {"path": str(csv), "recipient": "phone", "id": "id"}, **section,
           "providers": {"p": {"type": kind, "url": url, "rate": rate, **spec["settings"]}},
           "sinks": [{"type": "jsonl", "path": f"{tmp}/out/{{run_id}}.jsonl"}]}
    path = tmp / f"{kind}.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def throughput(sizes: dict[str, int], reps: int, tmp: Path) -> dict[str, Any]:
    """Against the fast upstream (the engine's ceiling) and the simulator (fidelity): the simulator's
    figures at the top level, as before the upstream existed, the upstream's under "upstream". Every provider
    in the same blast processes (bench.blast.against); when that fails, each on its own, so one broken
    provider does not hide the others' figures."""
    jobs = {}
    for kind, n in sizes.items():
        csv = audience(tmp / f"a-{kind}.csv", n)
        jobs[kind] = Job(kind, kind, csv, n, PROVIDERS[kind]["settings"].get("concurrency", 32),
                         lambda url, kind=kind, csv=csv: campaign(tmp, kind, url, csv, 1_000_000))
    try:
        sides = dict(zip(jobs, against(list(jobs.values()), reps, tmp), strict=True))
    except Exception:
        sides = {}
        for kind, job in jobs.items():
            try:
                (sides[kind],) = against([job], reps, tmp)
            except Exception as e:
                sides[kind] = {"error": f"{type(e).__name__}: {e}"}
    return {kind: side if "error" in side else {**side["simulator"], "upstream": side["upstream"]}
            for kind, side in sides.items()}


def precision(seconds: float, tmp: Path) -> dict[str, Any]:
    """Sendix at its documented 100 requests/s, the simulator judging every one-second window."""
    limit = 100
    n = int(limit * seconds)
    csv = audience(tmp / "a-precision.csv", n)
    with simulator("sendix") as url:  # the simulator's own strict 100/s
        toml = campaign(tmp, "sendix", url, csv, limit)
        out = run_blast(toml, "precision")
        stats = sim_stats(url)
    achieved = out["requests"] / out["elapsed_s"]
    return {"limit": limit, "seconds": out["elapsed_s"], "messages": n, "requests": out["requests"],
            "achieved_requests_per_s": round(achieved, 2), "share_of_limit": round(achieved / limit, 4),
            "answered_429": stats["rate_limited"], "max_in_any_second": stats["max_window"],
            "retries": out["retries"]}


def run(quick: bool = False) -> dict[str, Any]:
    reps = 1 if quick else 3
    sizes = {"nrs360": 10_000 if quick else 500_000, "kaleyra": 2_000 if quick else 100_000,
             "smsgateway24": 2_000 if quick else 100_000, "sendix": 1_000 if quick else 50_000,
             "sendx": 1_000 if quick else 50_000}
    out: dict[str, Any] = {"providers": {}}
    with tempfile.TemporaryDirectory(prefix="bench-prov-") as d:
        tmp = Path(d)
        if quick:  # the precision run (it waits on its 100/s) meanwhile, in a thread: 4 s less
            (tmp / "precision").mkdir()  # files of its own: both write a sendix campaign
            with ThreadPoolExecutor(1) as pool:
                precise = pool.submit(precision, 2, tmp / "precision")
                out["providers"] = throughput(sizes, reps, tmp)
                out["precision"] = precise.result()
        else:
            out["providers"] = throughput(sizes, reps, tmp)
            out["precision"] = precision(32, tmp)
    return out


def table(r: dict[str, Any]) -> str:
    lines = ["| provider | server | messages | msg/request | dispatcher msg/s | dispatcher req/s | bare loop req/s "
             "| ratio | engine CPU us/msg |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, s in r["providers"].items():
        if "error" in s:
            lines.append(f"| {kind} | failed: {s['error']} | | | | | | | |")
            continue
        for side in (s["upstream"], s):
            lines.append(f"| {kind} | {side['server']} | {side['messages']:,} | {side['msgs_per_request']} | "
                         f"{side['dispatcher_msgs_per_s']:,} | {side['dispatcher_requests_per_s']:,} | "
                         f"{side['bare_requests_per_s']:,} | {side['ratio']:.2f}x | {side['cpu_us_per_msg']} |")
    p = r["precision"]
    lines.append(f"\nRate precision, Sendix at {p['limit']} requests/s for {p['seconds']:.0f} s: "
                 f"{p['achieved_requests_per_s']} requests/s ({p['share_of_limit']:.1%} of the limit), "
                 f"{p['answered_429']} answered 429, at most {p['max_in_any_second']} in any one-second window "
                 "(goal: at least 97%, zero 429s).")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
