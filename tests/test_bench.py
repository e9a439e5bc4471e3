"""The benchmark harness in quick mode: it runs every scenario and writes its outputs.

A smoke test: it asserts that figures, tables and charts are produced, never how fast."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
from blastkit import ROOT


def test_quick_bench_writes_json_table_and_charts(tmp_path, postgres_dsn):
    env = {**os.environ, "DISPATCHER_BENCH_DSN": postgres_dsn}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--no-readme"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = list(tmp_path.glob("*.json"))
    assert len(reports) == 1
    report = orjson.loads(reports[0].read_bytes())
    assert report["machine"]["cores"] and report["machine"]["packages"]["aiohttp"]
    scenarios = report["scenarios"]
    from bench.__main__ import SCENARIOS
    assert {"codec", "blast", "providers", "pacing", "concurrency", "memory", "profile", "postgres", "daemon",
            "api"} <= set(SCENARIOS)
    for name in SCENARIOS:  # every registered scenario ran: none skipped (an import error) or failed
        assert name in scenarios and not {"error", "skipped"} & set(scenarios[name]), (name, scenarios.get(name))
    blast = scenarios["blast"]
    assert blast["batched_workers"]["workers"] >= 2 and blast["single_workers"]["workers"] >= 2
    for k in ("batched", "single", "batched_workers", "single_workers"):
        for side, server in ((blast[k], "simulator"), (blast[k]["upstream"], "upstream")):
            assert side["server"] == server
            assert side["dispatcher_msgs_per_s"] > 0 and side["bare_requests_per_s"] > 0 and side["ratio"] > 0
            assert side["sent"] == side["messages"], (k, server, side["sent"])  # the fast upstream answers validly
    assert blast["batched"]["floor_rows_per_s"] > 0 and blast["batched"]["upstream"]["over_floor"] > 0
    for kind, r in scenarios["providers"]["providers"].items():
        assert r["upstream"]["sent"] == r["upstream"]["messages"] == r["sent"], kind
    assert scenarios["providers"]["precision"]["requests"] > 0
    assert scenarios["api"]["api_msgs_per_s"] > 0 and scenarios["api"]["copy_msgs_per_s"] > 0
    assert {r["limiter"] for r in scenarios["pacing"]["strict"]} == {"new", "previous"}
    for level in scenarios["concurrency"]["levels"]:
        assert level["upstream_msgs_per_s"] > 0 and level["simulator_msgs_per_s"] > 0
    mem = scenarios["memory"]  # each blast's peak against the import-and-warm floor, measured in its own process
    assert mem["floor_mb"] > 0 and len(mem["sizes"]) >= 2
    for row in mem["sizes"]:
        assert row["sent"] == row["recipients"], row  # the fast upstream accepted every one
        assert row["peak_rss_mb"] > mem["floor_mb"] and row["engine_mb"] == round(row["peak_rss_mb"] - mem["floor_mb"], 1)
    assert mem["max_engine_mb"] == max(row["engine_mb"] for row in mem["sizes"]) and mem["flatness"] >= 0
    for k in ("batched", "single"):
        prof = scenarios["profile"][k]
        assert abs(sum(row["share"] for row in prof["stages"]) - 1) < 0.01
        assert {"CSV read (source)", "HTTP: client (engine/wire.py, aiohttp)", "JSON sink"} <= {row["stage"] for row in prof["stages"]}
    md = (tmp_path / "latest.md").read_text()
    assert "bare loop" in md and "Memory" in md and "upstream" in md and "Floor" in md and "Import-and-warm floor" in md
    assert {p.name for p in tmp_path.glob("*.png")} >= {"throughput.png", "codec.png", "memory.png"}


def _exchange(url: str, chunks: list[bytes], answers: int) -> list[tuple[bytes, bytes]]:
    """Write the chunks on one connection, read `answers` responses: (status line, body) each."""
    import socket
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        for chunk in chunks:
            s.sendall(chunk)
        got, buf = [], b""
        while len(got) < answers:
            data = s.recv(65536)
            assert data, "the upstream closed the connection"
            buf += data
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
                if len(rest) < length:
                    break
                got.append((head.split(b"\r\n")[0], rest[:length]))
                buf = rest[length:]
    return got


def _post(path: str, body: bytes, header: str = "Content-Length") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{header}: {len(body)}\r\n\r\n".encode() + body


def test_fast_upstream_answers_one_result_per_recipient_and_keeps_alive():
    """Batched shapes answer one accepted result per recipient; requests split across writes and two in one
    write are both answered, in order, on one kept-alive connection."""
    from bench.common import upstream

    to = ["34600000001", "34600000002", "34600000003"]
    with upstream("nrs360") as url:
        first = _post("/api/rest/sms", orjson.dumps({"to": to, "message": "hi"}))
        second = _post("/api/rest/sms", orjson.dumps({"to": to[:1], "message": "hi"}), header="content-length")
        (s1, b1), (s2, b2), (s3, b3) = _exchange(url, [first[:10], first[10:] + second[:7], second[7:] + first], 3)
    assert s1 == s2 == s3 == b"HTTP/1.1 202 Accepted"
    assert [r["to"] for r in orjson.loads(b1)["result"]] == to and all(r["accepted"] for r in orjson.loads(b1)["result"])
    assert [r["to"] for r in orjson.loads(b2)["result"]] == to[:1]
    assert len({r["id"] for r in orjson.loads(b1)["result"] + orjson.loads(b3)["result"]}) == 6  # ids never repeat
    with upstream("kaleyra") as url:
        ((status, body),) = _exchange(url, [_post("/v1/HX/messages", b"to=34600000001%2C34600000002&body=hi")], 1)
    assert status == b"HTTP/1.1 202 Accepted"
    assert [d["recipient"] for d in orjson.loads(body)["data"]] == ["34600000001", "34600000002"]
    with upstream("sendix") as url:
        (token, sent) = _exchange(url, [_post("/api/v1/auth/token", b"{}") + _post("/api/v1/messages", b"{}")], 2)
    assert orjson.loads(token[1])["token"] and orjson.loads(sent[1])["messageId"]


def test_sampled_stacks_go_to_the_innermost_frame_that_names_a_stage(tmp_path):
    """bench/sampled.py: a stack is its innermost named frame's (generated code is its caller's); stacks
    outside the event loop (imports, the codec's warm-up) are left out."""
    from bench.sampled import stages

    loop = "main (dispatcher/cli.py:116);Runner.run (asyncio/runners.py:118);"
    folded = tmp_path / "run.folded"
    folded.write_text("\n".join([
        loop + "Lane._send (dispatcher/engine/lane.py:332);HttpTransport.send (dispatcher/engine/transport.py:61);"
        "ClientSession._request (aiohttp/client.py:854) 7",
        loop + "Engine._read (dispatcher/engine/core.py:300);CampaignPreparer._messages "
        "(dispatcher/blast/preparer.py:144);fill_columns.<locals>.<listcomp> (<string>:7) 3",
        loop + "JsonlSink.write (dispatcher/sinks/files.py:120) 2",
        loop + "Engine.run (dispatcher/engine/core.py:240);CampaignPreparer.warm_up (dispatcher/blast/preparer.py:102);"
        "analyze (dispatcher/codecs/batch.py:148) 50",
        "<module> (dispatcher/__main__.py:3);_find_and_load (<frozen importlib._bootstrap>:1176) 40",
    ]) + "\n")
    assert stages(folded) == {"HTTP: client (engine/wire.py, aiohttp)": 7, "prepare: routing, message objects": 3, "JSON sink": 2}
