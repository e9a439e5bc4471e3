"""The baseline: a bare aiohttp + uvloop loop sending pre-built requests, as fast as it can.

`python bench/bare.py REQUESTS.jsonl CONCURRENCY [REQUESTS.jsonl CONCURRENCY ...]` where each line of a
file is {"method", "url", "headers", "body" (text)}; prints, for each file in turn (each on a loop and a
session of its own), {"requests", "seconds", "statuses", "cpu_s"} as one JSON line; `cpu_s` is this
process's CPU over that run alone (reading its file included, the interpreter's start-up not).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections import Counter

import aiohttp
import orjson
import uvloop


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(path: str, concurrency: int) -> dict[str, object]:
    with open(path, "rb") as f:
        reqs = [orjson.loads(line) for line in f]
    for r in reqs:
        r["body"] = r["body"].encode()
    statuses: Counter[int] = Counter()
    it = iter(reqs)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
        async def worker() -> None:
            for r in it:
                async with session.request(r["method"], r["url"], data=r["body"], headers=r["headers"]) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {"requests": len(reqs), "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()}}


if __name__ == "__main__":
    args = sys.argv[1:]
    for path, concurrency in zip(args[::2], args[1::2], strict=True):
        c0 = cpu()
        result = uvloop.run(main(path, int(concurrency)))
        print(orjson.dumps({**result, "cpu_s": cpu() - c0}).decode(), flush=True)
