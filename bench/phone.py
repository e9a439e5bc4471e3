"""Phone normalisation: `to_e164` number by number against `to_e164_column` over the whole column.

The column is the `phone` column of examples/audience.py (Spanish mobiles in mixed shapes:
+34..., 0034..., national, "+34 ... "), region ES, mobile=True, as the engine calls it; with
--bad, that fraction of invalid numbers (they go through phonenumbers either way). Each figure is
the best of --repeats runs, after one warm-up call (numba loads or compiles the kernel, the DFA
of +34 is built), and the two answers are checked equal.

    python bench/phone.py [--n 200000] [--bad 0] [--repeats 5] [--region ES]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dispatcher.phone import to_e164, to_e164_column  # noqa: E402


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--bad", type=float, default=0.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--region", default="ES")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audience.csv"
        subprocess.run([sys.executable, str(ROOT / "examples" / "audience.py"), str(path), str(a.n), "--seed", "1",
                        "--bad", str(a.bad)], check=True)
        with path.open(newline="", encoding="utf-8") as f:
            raws = [row[1] for row in csv.reader(f) if len(row) > 1][1:]
    t = time.perf_counter()
    to_e164_column(raws[:10], a.region, True)
    first = time.perf_counter() - t
    one = best(lambda: [to_e164(r, a.region, True) for r in raws], max(1, a.repeats // 2))
    col = best(lambda: to_e164_column(raws, a.region, True), a.repeats)
    assert to_e164_column(raws, a.region, True) == [to_e164(r, a.region, True) for r in raws]
    n = len(raws)
    print(f"{n} numbers, region {a.region}, mobile, first column call {first * 1e3:.0f} ms")
    print(f"to_e164        {one / n * 1e6:7.3f} us a number")
    print(f"to_e164_column {col / n * 1e6:7.3f} us a number   ({one / col:.1f}x)")


if __name__ == "__main__":
    main()
