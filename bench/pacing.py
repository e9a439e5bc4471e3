"""Pacing: the limiter against a simulator judging the same limit over any one-second window,
beside the previous limiter (bench/previous_limits.py), in the same run, on the same simulator.

- strict: rates 5, 10, 20, 100 and 1,000 requests/s, the simulator at the same rate: achieved /
  configured, 429s, and the most requests in any one-second window (as the simulator admitted
  them, and as we sent them);
- random 429s: 5% of answers a 429 our pace did not cause (the simulator's `throttle_rate` fault),
  a 20/s campaign; once as a proxy's 429 (no Retry-After) and once with `Retry-After: 1`;
- really limited: the simulator at 5/s, the campaign configured at 50/s: when it reaches 90% of
  the real limit, and its pace and share of 429s after the first 10 s.

The driver does with the limiter what a Lane does (acquire before every request, tell it of every
429 with its Retry-After) with fixed SendX requests over local HTTP and an endless audience, so
the figures measure the pace alone. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.blast import run_blast
from bench.common import audience, sim_reset, sim_stats, simulator
from bench.previous_limits import PreviousRateLimit
from dispatcher.engine.pace import RateLimit
from dispatcher.providers.base import retry_after

BODY = (b'{"from":{"email":"news@example.com"},"to":[{"email":"a@example.org"}],'
        b'"subject":"Hi","htmlBody":"<p>Hi</p>"}')
HEADERS = {"X-Team-ApiKey": "demo-team-key", "Content-Type": "application/json"}


class Paced:
    """One limiter as the Lane sees it: acquire, and a call for each 429."""

    def __init__(self, name: str, rate: float) -> None:
        self.name = name
        if name == "previous":
            old = PreviousRateLimit(rate)
            self.limit: Any = old
            self.on_429: Callable[[float | None], None] = lambda _ra: old.throttle()
        else:
            new = RateLimit(rate)
            self.limit = new
            self.on_429 = new.on_throttled


def configure(url: str, **faults: float) -> None:
    req = urllib.request.Request(url + "/_sim/config", data=orjson.dumps(faults), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def max_window(stamps: list[float]) -> int:
    w: deque[float] = deque()
    worst = 0
    for t in stamps:
        w.append(t)
        while w[0] <= t - 1.0:
            w.popleft()
        worst = max(worst, len(w))
    return worst


async def drive(url: str, paced: Paced, seconds: float, workers: int) -> dict[str, Any]:
    """Send for `seconds`; every send's time and status, relative to the start."""
    sends: list[tuple[float, int]] = []
    target = url + "/api/v1/rest/send/email"
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        if paced.name == "previous":
            await paced.limit.prime()  # the old Lane filled its bucket first
        t0 = time.monotonic()
        end = t0 + seconds

        async def work() -> None:
            while (left := end - time.monotonic()) > 0:
                try:  # a wait for a slot ends with the run: else every worker queued in the limiter at the
                    await asyncio.wait_for(paced.limit.acquire(), left)  # end still waits and sends,
                except TimeoutError:  # up to workers / rate seconds more
                    return
                t = time.monotonic() - t0
                async with session.post(target, data=BODY, headers=HEADERS) as r:
                    await r.read()
                    sends.append((t, r.status))
                    if r.status == 429:
                        paced.on_429(retry_after(r.headers))
        await asyncio.gather(*(work() for _ in range(workers)))
    return {"sends": sends, "seconds": seconds}


def one(url: str, name: str, rate: float, seconds: float, sim_rate: float, workers: int = 16,
        **faults: float) -> dict[str, Any]:
    configure(url, rate=sim_rate, throttle_rate=faults.get("throttle_rate", 0.0),
              throttle_retry_after=faults.get("throttle_retry_after", 0.0))
    sim_reset(url)
    paced = Paced(name, rate)
    out = uvloop.run(drive(url, paced, seconds, workers))
    stats = sim_stats(url)
    sends = sorted(out["sends"])
    ok = [t for t, s in sends if s < 300]
    pace = (len(ok) - 1) / (ok[-1] - ok[0]) if len(ok) > 1 else 0.0  # from the first acceptance to the last
    return {"limiter": name, "configured": rate, "seconds": seconds, "requests": len(sends), "accepted": len(ok),
            "accepted_per_s": round(pace, 2), "share_of_rate": round(pace / min(rate, sim_rate), 4),
            "answered_429": sum(s == 429 for _, s in sends), "window_429": stats["rate_limited"],
            "injected_429": stats.get("throttled_injected", 0), "max_window_admitted": stats["max_window"],
            "max_window_sent": max_window([t for t, _ in sends]),
            "lowered": getattr(paced.limit, "lowered", None), "final_rate": round(paced.limit.current, 2),
            "ok_times": ok, "sends": sends}


def limited(url: str, name: str, seconds: float) -> dict[str, Any]:
    """Simulator at 5/s, campaign at 50/s: first second at >= 90% of 5/s, pace and 429s after 10 s."""
    r = one(url, name, 50.0, seconds, 5.0, workers=8)
    per_second = [sum(int(t) == k for t in r["ok_times"]) for k in range(int(seconds))]
    reached = next((k for k, c in enumerate(per_second) if c >= 4.5), None)
    after = [(t, s) for t, s in r["sends"] if t >= 10.0]
    late = seconds - 10.0
    r.update(per_second=per_second, reached_90pct_at_s=reached,
             accepted_per_s_after_10s=round(sum(s < 300 for _, s in after) / late, 2) if late > 0 else None,
             share_429_after_10s=round(sum(s == 429 for _, s in after) / max(len(after), 1), 4))
    return r


CAMPAIGN = """[source]
path = "{csv}"
recipient = "email"
id = "id"

[messages.email]
sender = "news@example.com"
subject = "Hello"
recipient = "email"
template = "<p>Hi {{name}}</p>"

[providers.p]
type = "sendx"
url = "{url}"
api_key_env = "SENDX_API_KEY"
channel = "email"
rate = {rate}
batch_size = 1
concurrency = 8

[[sinks]]
type = "jsonl"
path = "{tmp}/out/{{run_id}}.jsonl"
"""


def engine(url: str, tmp: Path, label: str, rate: float, recipients: int, sim_rate: float,
           **faults: float) -> dict[str, Any]:
    """A real `dispatcher blast` campaign (the Lane with the new limiter; the old one cannot be put
    in it), one email a request: its sent per second from the run's own timeline."""
    configure(url, rate=sim_rate, throttle_rate=faults.get("throttle_rate", 0.0),
              throttle_retry_after=faults.get("throttle_retry_after", 0.0))
    sim_reset(url)
    csv = tmp / f"{label}.csv"
    with open(csv, "w") as f:
        f.write("id,email,name\n" + "".join(f"r{i},user{i}@example.com,n{i}\n" for i in range(recipients)))
    toml = tmp / f"{label}.toml"
    toml.write_text(CAMPAIGN.format(csv=csv, url=url, rate=rate, tmp=tmp))
    out = run_blast(toml, label)
    stats = sim_stats(url)
    tl = out.get("timeline") or []
    after = [(t, d, q) for t, d, q in tl if t >= 10.0]
    r: dict[str, Any] = {"label": label, "configured": rate, "provider_limit": sim_rate, "recipients": recipients,
                         "sent": out["sent"], "failed": out["failed"], "elapsed_s": round(out["elapsed_s"], 2),
                         "sent_per_s": round(out["sent"] / out["elapsed_s"], 2), "requests": out["requests"],
                         "window_429": stats["rate_limited"], "injected_429": stats.get("throttled_injected", 0),
                         "max_window_admitted": stats["max_window"]}
    if len(after) >= 2:
        (t1, d1, q1), (t2, d2, q2) = after[0], after[-1]
        r["sent_per_s_after_10s"] = round((d2 - d1) / (t2 - t1), 2)
        r["share_429_after_10s"] = round(1 - (d2 - d1) / max(q2 - q1, 1), 4)
    return r


AT_LIMIT = """[source]
path = "{csv}"
recipient = "phone"
id = "id"

[message]
channel = "sms"
sender = "ACME"
region = "ES"
template = "Hola {{name}}, tu factura ya esta disponible."

[providers.sms]
type = "nrs360"
url = "{url}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
rate = {rate}
batch_size = 1000

[[sinks]]
type = "jsonl"
path = "{tmp}/out/{{run_id}}.jsonl"
"""


def ideal(results: Path, batch: int = 1000) -> int:
    """ceil(sent / batch) for each batch key the run's results show (360nrs: one a text encoding)."""
    by: dict[Any, int] = {}
    with open(results, "rb") as f:
        for line in f:
            r = orjson.loads(line)
            if r.get("status") == "sent":
                by[r.get("encoding")] = by.get(r.get("encoding"), 0) + 1
    return sum(-(-n // batch) for n in by.values())


def at_limit(blasts: int, recipients: int, rate: float = 50.0) -> dict[str, Any]:
    """`make demo`'s case: 360nrs, 1000 recipients a request, the campaign's rate = the simulator's own
    limit, `blasts` runs back to back, each against a fresh simulator: requests against ceil(sent / 1000),
    429s, and the pace from the run's timeline (requests a second from its first second to its last sample)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-at-limit-") as d:
        tmp = Path(d)
        csv = audience(tmp / "audience.csv", recipients)
        for i in range(blasts):
            with simulator("nrs360", "--rate", f"nrs360={rate:g}") as url:
                toml = tmp / f"at-limit-{i}.toml"
                toml.write_text(AT_LIMIT.format(csv=csv, url=url, rate=rate, tmp=tmp))
                out = run_blast(toml, f"at-limit-{i}")
                stats = sim_stats(url)
            tl = [(t, q) for t, _, q in out.get("timeline") or []]
            steady = [(t, q) for t, q in tl if t >= 1.0]
            pace = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) if len(steady) >= 2 and \
                steady[-1][0] > steady[0][0] else None
            runs.append({"sent": out["sent"], "requests": stats["requests"], "ideal": ideal(tmp / "out" / f"at-limit-{i}.jsonl"),
                         "window_429": stats["rate_limited"], "max_window": stats["max_window"],
                         "pace_share": round(pace / rate, 3) if pace else None})
    return {"rate": rate, "recipients": recipients, "blasts": blasts, "runs": runs,
            "with_429": sum(r["window_429"] > 0 for r in runs),
            "full": sum(r["requests"] - r["window_429"] == r["ideal"] for r in runs)}


def _both(urls: list[str], each: Callable[[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """each(url, limiter) for the new limiter and the previous one: one after the other on one simulator,
    or (quick mode) at once, each on a simulator of its own (a thread and an event loop each: a few hundred
    requests a second between them)."""
    if len(urls) == 1:
        return [each(urls[0], name) for name in ("new", "previous")]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(each, urls, ("new", "previous")))


def run(quick: bool = False) -> dict[str, Any]:
    """Quick mode: both limiters at once on two simulators, and one at-limit blast meanwhile (it waits on its
    rate; 20 back to back in full): 7 s where it was 15."""
    rates = [20, 100] if quick else [5, 10, 20, 100, 1000]
    out: dict[str, Any] = {"strict": [], "random_429": [], "limited": []}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(1))
        limit = pool.submit(at_limit, 1, 20_000) if quick else None
        urls = [stack.enter_context(simulator("sendx")) for _ in range(2 if quick else 1)]
        for rate in rates:
            seconds = 1.0 if quick else (10.0 if rate <= 20 else 8.0)
            out["strict"] += _both(urls, lambda url, name, rate=rate, seconds=seconds: one(
                url, name, rate, seconds, rate, workers=8 if rate <= 20 else 32))
        for ra in ([0.0] if quick else [0.0, 1.0]):
            for r in _both(urls, lambda url, name, ra=ra: one(url, name, 20.0, 1.5 if quick else 20.0, 20.0, workers=8,
                                                              throttle_rate=0.05, throttle_retry_after=ra)):
                r["retry_after"] = ra or None
                out["random_429"].append(r)
        out["limited"] += _both(urls, lambda url, name: limited(url, name, 2.0 if quick else 30.0))
        if not quick:
            url = urls[0]
            with tempfile.TemporaryDirectory(prefix="bench-pacing-") as d:
                out["campaigns"] = [
                    engine(url, Path(d), "random-429", 20.0, 400, 20.0, throttle_rate=0.05),
                    engine(url, Path(d), "limited", 50.0, 150, 5.0)]
        out["at_limit"] = limit.result() if limit is not None else at_limit(20, 300_000)
    for group in (v for k, v in out.items() if k != "at_limit"):
        for r in group:
            r.pop("ok_times", None)
            r.pop("sends", None)
    return out


def table(r: dict[str, Any]) -> str:
    lines = ["| rate/s | limiter | achieved/s | of rate | 429s | most in 1 s (admitted / sent) |",
             "|---:|---|---:|---:|---:|---|"]
    for s in r["strict"]:
        lines.append(f"| {s['configured']:g} | {s['limiter']} | {s['accepted_per_s']} | {s['share_of_rate']:.1%} | "
                     f"{s['answered_429']} | {s['max_window_admitted']} / {s['max_window_sent']} |")
    lines += ["", "5% random 429s, 20/s campaign:", "",
              "| Retry-After | limiter | accepted/s | of 20/s | injected 429s | window 429s | lowered | final rate |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["random_429"]:
        lines.append(f"| {s['retry_after'] or 'none'} | {s['limiter']} | {s['accepted_per_s']} | "
                     f"{s['share_of_rate']:.1%} | {s['injected_429']} | {s['window_429']} | "
                     f"{s['lowered'] if s['lowered'] is not None else '-'} | {s['final_rate']} |")
    lines += ["", "Provider really limited to 5/s, campaign at 50/s:", "",
              "| limiter | reached 90% at | accepted/s after 10 s | 429 share after 10 s | accepted per second |",
              "|---|---:|---:|---:|---|"]
    for s in r["limited"]:
        reached = f"{s['reached_90pct_at_s']} s" if s["reached_90pct_at_s"] is not None else "never"
        after = s["accepted_per_s_after_10s"] if s["accepted_per_s_after_10s"] is not None else "-"
        lines.append(f"| {s['limiter']} | {reached} | {after} | {s['share_429_after_10s']:.1%} | "
                     f"{' '.join(map(str, s['per_second']))} |")
    a = r.get("at_limit")
    if a:
        lines += ["", f"At the provider's own limit ({a['rate']:g}/s, 360nrs, 1000 recipients a request, "
                  f"{a['recipients']:,} recipients), {a['blasts']} blasts back to back: {a['full']} made exactly "
                  f"ceil(sent / 1000) requests, {a['with_429']} got a 429:", "",
                  "| blast | sent | requests | ceil(sent / 1000) | 429s | most in 1 s | pace / rate |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for i, x in enumerate(a["runs"]):
            share = f"{x['pace_share']:.1%}" if x["pace_share"] is not None else "-"
            lines.append(f"| {i + 1} | {x['sent']} | {x['requests']} | {x['ideal']} | {x['window_429']} | "
                         f"{x['max_window']} | {share} |")
    if r.get("campaigns"):
        lines += ["", "Through the engine (`dispatcher blast`, new limiter), one email a request:", "",
                  "| campaign | configured/s | provider limit/s | sent/s | sent/s after 10 s | 429 share after 10 s |"
                  " 429s (window / injected) | failed |",
                  "|---|---:|---:|---:|---:|---:|---|---:|"]
        for c in r["campaigns"]:
            share = c.get("share_429_after_10s")
            lines.append(f"| {c['label']} | {c['configured']:g} | {c['provider_limit']:g} | {c['sent_per_s']} | "
                         f"{c.get('sent_per_s_after_10s', '-')} | {f'{share:.1%}' if share is not None else '-'} | "
                         f"{c['window_429']} / {c['injected_429']} | {c['failed']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run("--quick" in sys.argv)))
