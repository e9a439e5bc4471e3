"""The baseline: a bare aiohttp + uvloop loop sending pre-built requests, as fast as it can.

`python bench/bare.py REQUESTS.jsonl CONCURRENCY` where each line is
{"method", "url", "headers", "body" (text)}; prints {"requests", "seconds", "statuses"} as JSON.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import aiohttp
import orjson
import uvloop


async def main(path: str, concurrency: int) -> None:
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
    print(orjson.dumps({"requests": len(reqs), "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()}}).decode())


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
