"""Codec benchmark: classify and count parts for a million realistic SMS texts.

Paths, all on the same messages (bench/codec_messages.py), each figure the median of 3 repetitions
(quick: one); the rivals to numba are in bench/codec_rivals.py:
  numba      dispatcher.codecs.analyze per chunk of 2048 (as the pipeline calls it), including the
             conversion from Python strings to the code-point array
  reference  dispatcher.codecs.reference.count, the plain-Python reference, one text at a time
  gsm0338    the gsm0338 PyPI package: encode with codec "gsm03.38", fall back to UTF-16 on
             error, count parts (escape and surrogate pairs kept whole)
  charmap    a tuned pure-Python classifier (codecs.charmap_encode over a charmap_build table, C
             speed per character): the fastest pure-Python approach we know, for an honest ratio
Also: the conversion alone, the kernel alone, the first-run (cold cache) compile time and the
warm-cache import + first-call time (one call per input width: uint8, uint16, uint32), both
measured in fresh subprocesses.

    python bench/codec.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.codec_messages import generate_messages  # noqa: E402  (after the path, for `python bench/codec.py`)
from bench.codec_rivals import charmap_count, gsm0338_count, load_charmap  # noqa: E402

CHUNK = 2048
REPEATS = 3
N_FULL = 1_000_000
N_QUICK = 20_000


def _measure(fn: Callable[[], object], n: int, repeats: int = REPEATS) -> dict:
    """Median wall-clock seconds of `repeats` runs over n messages, and the median CPU seconds of
    the same runs (on a shared machine the steadier figure)."""
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med, cpu_med = statistics.median(wall), statistics.median(cpu)
    return {
        "median_s": med,
        "runs_s": wall,
        "msgs_per_s": n / med,
        "ns_per_msg": med / n * 1e9,
        "cpu_median_s": cpu_med,
        "msgs_per_cpu_s": n / cpu_med,
    }


def _subprocess_seconds(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


_STARTUP_CODE = """
import json, time
t0 = time.perf_counter()
from dispatcher.codecs import analyze
t1 = time.perf_counter()
analyze(["hello", "world"])                    # uint8 input
t2 = time.perf_counter()
analyze(["hello", "10€ “world”"])              # uint16 input
t3 = time.perf_counter()
analyze(["hello", "😀"], gsm_pt=True, transliterate=True)  # uint32 input
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_uint8_s": t2 - t1, "first_call_uint16_s": t3 - t2,
                  "first_call_uint32_s": t4 - t3, "first_calls_s": t4 - t1, "total_s": t4 - t0}))
"""


def startup_times(cold: bool = True) -> dict:
    """Cold (empty numba cache: compiles) and warm (cache filled by the cold run) startup, in subprocesses.
    Without `cold` (quick mode: the compile is 12 of a quick codec run's 18 s), warm only, on the usual cache."""
    if not cold:
        return {"cold": None, "warm": _subprocess_seconds(_STARTUP_CODE, {**os.environ, "PYTHONPATH": str(ROOT)})}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        cold_s = _subprocess_seconds(_STARTUP_CODE, env)
        warm = _subprocess_seconds(_STARTUP_CODE, env)
    return {"cold": cold_s, "warm": warm}


def _utf32_copy(c):
    import numpy as np
    lens = np.fromiter(map(len, c), dtype=np.int64, count=len(c))
    return np.frombuffer("".join(c).encode("utf-32-le", "surrogatepass"), dtype=np.uint32), lens


def kernel_only(chunks: list[list[str]], n: int, repeats: int) -> dict:
    """The kernel calls alone: each chunk converted first (untimed), as fresh in cache as in analyze."""
    from dispatcher.codecs import kernels as K
    from dispatcher.codecs.batch import to_codepoints

    wall, cpu = [], []
    for _ in range(repeats):
        w = c = 0.0
        for chunk in chunks:
            cps, lens = to_codepoints(chunk)
            c0, t0 = time.process_time(), time.perf_counter()
            K.classify(cps, lens, K.GSM7_TABLE, K.PT_TABLE, K.TRANS_INDEX, K.TRANS_DATA, K.TRANS_MAX, False, False)
            w += time.perf_counter() - t0
            c += time.process_time() - c0
        wall.append(w)
        cpu.append(c)
    med, cpu_med = statistics.median(wall), statistics.median(cpu)
    return {"median_s": med, "runs_s": wall, "msgs_per_s": n / med, "ns_per_msg": med / n * 1e9,
            "cpu_median_s": cpu_med, "msgs_per_cpu_s": n / cpu_med}


def run(quick: bool = False) -> dict:
    """Run every path on the same messages; returns a JSON-able dict of figures."""
    import gsm0338  # noqa: F401  registers the "gsm03.38" codec

    from dispatcher.codecs import analyze, reference
    from dispatcher.codecs.batch import to_codepoints

    load_charmap()
    startup = startup_times(cold=not quick)  # before anything is compiled in this process

    n = N_QUICK if quick else N_FULL
    repeats = 1 if quick else REPEATS  # quick: one pass of each path (the pure-Python ones are most of the time)
    t0 = time.perf_counter()
    messages = generate_messages(n)
    gen_s = time.perf_counter() - t0
    chunks = [messages[i : i + CHUNK] for i in range(0, n, CHUNK)]
    analyze(chunks[0])  # compile / load from cache outside the timings

    results: dict[str, list] = {}

    def numba_path():
        results["numba"] = [analyze(c) for c in chunks]

    def convert_all(convert):
        def loop():
            for c in chunks:
                convert(c)  # result dropped at once, as the pipeline does after the kernel call

        return loop

    conversions = {
        "zero_copy_view": to_codepoints,  # what analyze uses
        "narrowest_copy": lambda c: to_codepoints(c, zero_copy=False),
        "utf32_copy": _utf32_copy,
    }
    paths = {
        "numba": numba_path,
        "reference": lambda: results.__setitem__("reference", [reference.count(t) for t in messages]),
        "gsm0338": lambda: results.__setitem__("gsm0338", [gsm0338_count(t) for t in messages]),
        "charmap": lambda: results.__setitem__("charmap", [charmap_count(t) for t in messages]),
    }
    timings = {name: _measure(fn, n, repeats) for name, fn in paths.items()}
    conv = {name: _measure(convert_all(fn), n, repeats) for name, fn in conversions.items()}
    kernel = kernel_only(chunks, n, repeats)
    return _report(quick, n, repeats, gen_s, messages, chunks, results, timings, conv, kernel, startup)


def _report(quick: bool, n: int, repeats: int, gen_s: float, messages: list[str], chunks: list[list[str]],
            results: dict[str, list], timings: dict, conv: dict, kernel: dict, startup: dict) -> dict:
    """The figures of one run, every path checked against the reference first."""
    from dispatcher.codecs import ENCODINGS
    from dispatcher.codecs.batch import to_codepoints

    ref = results["reference"]
    got = []
    for a in results["numba"]:
        got.extend(
            zip([ENCODINGS[e] for e in a.encoding.tolist()], a.units.tolist(), a.parts.tolist(), strict=True)
        )
    agreement = {
        "numba": sum(x == y for x, y in zip(got, ref, strict=True)),
        "gsm0338": sum(x == y for x, y in zip(results["gsm0338"], ref, strict=True)),
        "charmap": sum(x == y for x, y in zip(results["charmap"], ref, strict=True)),
    }
    dtypes = [str(to_codepoints(c)[0].dtype) for c in chunks]
    encodings = {e: sum(r[0] == e for r in ref) for e in ("GSM-7", "UCS-2")}
    lengths = [len(t) for t in messages]
    pure = {k: timings[k]["msgs_per_s"] for k in ("reference", "gsm0338", "charmap")}
    pure_cpu = {k: timings[k]["msgs_per_cpu_s"] for k in pure}
    fastest_pure = max(pure, key=pure.get)
    nb = timings["numba"]["msgs_per_s"]
    nb_cpu = timings["numba"]["msgs_per_cpu_s"]
    return {
        "benchmark": "codec",
        "quick": quick,
        "messages": n,
        "chunk": CHUNK,
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "generation_s": gen_s,
        "dataset": {
            "mean_chars": statistics.fmean(lengths),
            "max_chars": max(lengths),
            "encodings": encodings,
            "multi_part": sum(r[2] > 1 for r in ref),
            "chunks": len(chunks),
            "chunk_dtypes": {d: dtypes.count(d) for d in sorted(set(dtypes))},
        },
        "paths": timings,
        "conversion": {
            **conv,
            "used": "zero_copy_view",
            "share_of_numba_path": conv["zero_copy_view"]["median_s"] / timings["numba"]["median_s"],
        },
        "kernel_only": kernel,
        "ratios": {
            "numba_over_reference": nb / pure["reference"],
            "numba_over_gsm0338": nb / pure["gsm0338"],
            "numba_over_charmap": nb / pure["charmap"],
            "numba_over_fastest_pure_python": nb / pure[fastest_pure],
            "fastest_pure_python": fastest_pure,
            "by_cpu_time": {
                "numba_over_reference": nb_cpu / pure_cpu["reference"],
                "numba_over_gsm0338": nb_cpu / pure_cpu["gsm0338"],
                "numba_over_charmap": nb_cpu / pure_cpu["charmap"],
            },
        },
        "agreement_with_reference": {k: v / n for k, v in agreement.items()},
        "startup": startup,
    }


def format_table(r: dict) -> str:
    d = r["dataset"]
    rows = [
        f"codec benchmark: {r['messages']:,} messages (mean {d['mean_chars']:.0f} chars, "
        f"{d['encodings']['UCS-2']:,} UCS-2, {d['multi_part']:,} multi-part), chunks of {r['chunk']}, "
        f"median of {r['repeats']}",
        "",
        f"{'path':<34} {'msgs/s':>11} {'ns/msg':>8} {'vs numba':>9} {'msgs/cpu-s':>11} {'vs numba':>9}  agrees",
    ]
    labels = {
        "numba": "numba analyze (incl. conversion)",
        "reference": "pure-Python reference",
        "gsm0338": "gsm0338 package",
        "charmap": "pure Python, charmap_encode",
    }
    nb = r["paths"]["numba"]
    for key, label in labels.items():
        p = r["paths"][key]
        agree = r["agreement_with_reference"].get(key, 1.0)
        rows.append(
            f"{label:<34} {p['msgs_per_s']:>11,.0f} {p['ns_per_msg']:>8,.0f} "
            f"{nb['msgs_per_s'] / p['msgs_per_s']:>8.1f}x {p['msgs_per_cpu_s']:>11,.0f} "
            f"{nb['msgs_per_cpu_s'] / p['msgs_per_cpu_s']:>8.1f}x  {agree:.2%}"
        )
    c = r["conversion"]
    for label, p in (("  kernel alone", r["kernel_only"]), ("  conversion alone", c["zero_copy_view"])):
        rows.append(
            f"{label:<34} {p['msgs_per_s']:>11,.0f} {p['ns_per_msg']:>8,.0f} {'':>9} {p['msgs_per_cpu_s']:>11,.0f}"
        )
    rows.append(
        f"  conversion is {c['share_of_numba_path']:.0%} of the numba path; alternatives, ns/msg: "
        + ", ".join(
            f"{m} {c[m]['ns_per_msg']:.0f}" for m in ("zero_copy_view", "narrowest_copy", "utf32_copy")
        )
    )
    s = r["startup"]
    rows += [
        "",
        f"numba over fastest pure Python ({r['ratios']['fastest_pure_python']}): "
        f"{r['ratios']['numba_over_fastest_pure_python']:.1f}x wall-clock, "
        f"{r['ratios']['by_cpu_time']['numba_over_' + r['ratios']['fastest_pure_python']]:.1f}x CPU time",
        f"cold start (empty cache, compiles): import {s['cold']['import_s']:.2f} s + first calls "
        f"{s['cold']['first_calls_s']:.2f} s = {s['cold']['total_s']:.2f} s" if s["cold"] else
        "cold start: not measured (quick mode)",
        f"warm start (cached):                import {s['warm']['import_s']:.2f} s + first calls "
        f"{s['warm']['first_calls_s']:.3f} s = {s['warm']['total_s']:.2f} s",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} messages instead of {N_FULL:,}")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    result = run(quick=args.quick)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def table(r: dict) -> str:
    """The harness's markdown table (format_table is the console one)."""
    labels = {"numba": "numba `analyze` (incl. conversion from str)", "reference": "pure-Python reference",
              "gsm0338": "`gsm0338` package", "charmap": "tuned pure Python (`charmap_encode`)"}
    nb = r["paths"]["numba"]["msgs_per_s"]
    lines = ["| path | msgs/s | numba is |", "|---|---:|---:|"]
    for k, label in labels.items():
        if k in r["paths"]:
            v = r["paths"][k]["msgs_per_s"]
            lines.append(f"| {label} | {v:,.0f} | {'—' if k == 'numba' else f'{nb / v:,.1f}x'} |")
    c = r["conversion"]
    lines.append(f"\n{r['messages']:,} messages, chunks of {r['chunk']}, median of {r['repeats']}; numba over the "
                 f"fastest pure Python ({r['ratios']['fastest_pure_python']}): "
                 f"{r['ratios']['numba_over_fastest_pure_python']:.1f}x (goal 10x). Conversion from `str` is "
                 f"{c['share_of_numba_path']:.0%} of the numba path.")
    return "\n".join(lines)
