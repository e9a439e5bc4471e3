"""The pure-Python floor of a batched blast: `csv.reader` -> `orjson.dumps` of a 4-field result -> file.

`python bench/floor.py AUDIENCE.csv OUT.jsonl` prints {"rows", "seconds", "cpu_s"} as JSON. No HTTP, no
codec, no numbers checked: the least any Python program that reads the same CSV and writes one JSON
result line per row can do, so dispatcher/floor says how much of the engine is overhead on top of that.
"""

from __future__ import annotations

import csv
import sys
import time

import orjson


def main(src: str, dst: str) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    with open(src, newline="") as f, open(dst, "wb") as out:
        reader = csv.reader(f)
        header = next(reader)
        rid, phone = header.index("id"), header.index("phone")
        for row in reader:
            out.write(orjson.dumps({"id": row[rid], "to": row[phone], "status": "sent", "message_id": None}) + b"\n")
            rows += 1
    print(orjson.dumps({"rows": rows, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}).decode())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
