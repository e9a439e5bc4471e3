"""What anyio would cost the engine's hand-offs and tasks, on uvloop: `python -m bench.anyio_cost`.

An item handed from one task to another through a bounded anyio memory object stream against an
asyncio.Queue of the same size, and a task started in an anyio task group against `asyncio.create_task`:
microseconds each, medians of 5 runs (README, Architecture: why the engine's tasks are plain asyncio).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import anyio
import uvloop

N = 200_000


async def _queue() -> float:
    q: asyncio.Queue[int | None] = asyncio.Queue(maxsize=64)

    async def produce() -> None:
        for i in range(N):
            await q.put(i)
        await q.put(None)

    async def consume() -> None:
        while (await q.get()) is not None:
            pass
    t = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return (time.perf_counter() - t) / N * 1e6


async def _stream() -> float:
    send, receive = anyio.create_memory_object_stream[int](64)

    async def produce() -> None:
        async with send:
            for i in range(N):
                await send.send(i)

    async def consume() -> None:
        async with receive:
            async for _ in receive:
                pass
    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        tg.start_soon(consume)
    return (time.perf_counter() - t) / N * 1e6


async def _tasks(n: int = N // 10) -> float:
    t = time.perf_counter()
    await asyncio.gather(*(asyncio.create_task(asyncio.sleep(0)) for _ in range(n)))
    return (time.perf_counter() - t) / n * 1e6


async def _task_group(n: int = N // 10) -> float:
    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(anyio.sleep, 0)
    return (time.perf_counter() - t) / n * 1e6


async def main() -> None:
    runs: dict[str, list[float]] = {"asyncio.Queue": [], "anyio stream": [], "create_task": [], "anyio task group": []}
    for _ in range(5):
        for name, fn in zip(runs, (_queue, _stream, _tasks, _task_group), strict=True):
            runs[name].append(await fn())
    for name, v in runs.items():
        print(f"{name:16s} {statistics.median(v):6.2f} us (runs: {', '.join(f'{x:.2f}' for x in v)})")


if __name__ == "__main__":
    uvloop.run(main())
