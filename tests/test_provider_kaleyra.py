"""Kaleyra Hexa: the adapter driven end to end against its simulator, plus parse() on crafted answers.

Every run is a real `dispatcher blast` of a campaign file written here; the simulator's ledger
and request counts say what reached the provider, and the results file what the user sees.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from blastkit import Receiver, quiet_blast, with_deferred, write_toml

from dispatcher.errors import ConfigError
from dispatcher.model import Content, Message
from dispatcher.providers.base import Verdict
from dispatcher.providers.kaleyra import Kaleyra, KaleyraSettings
from tests.conftest import CREDENTIALS

pytestmark = pytest.mark.timeout(60)

SID = CREDENTIALS["KALEYRA_SID"]
KEY = CREDENTIALS["KALEYRA_API_KEY"]


# -- helpers ------------------------------------------------------------------------------------------



def number(i: int) -> str:
    return f"+3461{i:07d}"


def blast(tmp: Path, url: str, n: int, *, template: str = "Your order has shipped", options: dict | None = None,
          provider: dict | None = None, names: list[str] | None = None, sender: str = "KLRHXA") -> list[dict]:
    """Write an audience of n and a campaign, blast it, return the results (in seq order)."""
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "audience.csv", "w") as f:
        f.write("id,phone,name\n")
        for i in range(n):
            f.write(f"r{i},{number(i)},{names[i] if names else f'name{i}'}\n")
    p = {"type": "kaleyra", "url": url, "sid_env": "KALEYRA_SID", "api_key_env": "KALEYRA_API_KEY",
         "rate": 20, "concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.5, "max_attempts": 8, "timeout": 5}
    p.update(provider or {})
    write_toml(tmp / "campaign.toml", {
        "source": {"path": "audience.csv", "recipient": "phone", "id": "id"},
        "message": {"sender": sender, "template": template,
                    "options": options if options is not None else {"type": "TXN"}},
        "providers": {"sms": p}, "sinks": [{"type": "jsonl", "path": "results.jsonl"}]})
    code, summary = quiet_blast(tmp / "campaign.toml")
    assert code in (0, 1, 3), f"blast exited {code}"
    out = tmp / "results.jsonl"
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    return with_deferred(rows, {i + 2: f"r{i}" for i in range(n)}, summary)


def requests_made(sim, kind: str = "kaleyra") -> int:
    return sim.stats(kind)["requests"]


def assert_ledger_matches(sim, results: list[dict]) -> list[dict]:
    """One `sent` result per ledger entry: same id, same number, nothing twice, nothing lost."""
    ledger = sim.ledger("kaleyra")
    sent = [r for r in results if r["status"] == "sent"]
    ids = [e["id"] for e in ledger]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(r["message_id"] for r in sent)
    by_id = {e["id"]: e for e in ledger}
    for r in sent:
        assert by_id[r["message_id"]]["to"] == r["to"].lstrip("+")
        assert r["trace_id"] == by_id[r["message_id"]]["request_id"]
    return ledger


def call(url: str, form: dict | None = None, *, key: str = KEY, json_body: Any = None, method: str = "POST"
         ) -> tuple[int, dict]:
    """A raw request to the simulator: (HTTP status, JSON answer)."""
    headers = {"api-key": key} if key else {}
    data = None
    if json_body is not None:
        data, headers["Content-Type"] = orjson.dumps(json_body), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


# -- batching by route type -------------------------------------------------------------------------------

def test_txn_sends_at_most_100_numbers_a_request(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 250, options={"type": "TXN", "template_id": "1107160000000000001"})
    assert [r["status"] for r in results] == ["sent"] * 250
    assert requests_made(sim) == 3  # 100 + 100 + 50
    ledger = assert_ledger_matches(sim, results)
    assert Counter(e["request_id"] for e in ledger).most_common(1)[0][1] == 100
    assert {e["type"] for e in ledger} == {"TXN"}
    assert {e["template_id"] for e in ledger} == {"1107160000000000001"}


def test_otp_sends_one_number_a_request(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 7, template="Your code is 4711", options={"type": "OTP"})
    assert [r["status"] for r in results] == ["sent"] * 7
    assert requests_made(sim) == 7
    ledger = assert_ledger_matches(sim, results)
    assert len({e["request_id"] for e in ledger}) == 7


def test_mkt_bulk_sends_many_numbers_a_request(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 300, options={"type": "MKT"})
    assert [r["status"] for r in results] == ["sent"] * 300
    assert requests_made(sim) == 1
    assert_ledger_matches(sim, results)


def test_mkt_batch_size_setting_is_honoured(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 250, options={"type": "MKT"}, provider={"batch_size": 120})
    assert [r["status"] for r in results] == ["sent"] * 250
    assert requests_made(sim) == 3
    assert_ledger_matches(sim, results)


def test_only_identical_texts_share_a_request(sim, tmp_path):
    names = ["ana", "bob", "ana", "eva", "bob", "ana"]
    results = blast(tmp_path, sim.url("kaleyra"), 6, template="Hi {name}", names=names)
    assert [r["status"] for r in results] == ["sent"] * 6
    assert requests_made(sim) == 3  # one body per request
    ledger = assert_ledger_matches(sim, results)
    by_id = {e["id"]: e for e in ledger}
    for r, name in zip(results, names, strict=True):
        assert by_id[r["message_id"]]["body"] == f"Hi {name}"


def test_unicode_flag_follows_the_codec(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 3, template="Привет {name}, ваш заказ отправлен")
    assert [r["status"] for r in results] == ["sent"] * 3
    assert [r["encoding"] for r in results] == ["UCS-2"] * 3
    assert {e["unicode"] for e in sim.ledger("kaleyra")} == {"1"}

    sim.reset("kaleyra")
    results = blast(tmp_path / "gsm", sim.url("kaleyra"), 3, template="Hello {name} [ok] ~ 5€")
    assert [r["status"] for r in results] == ["sent"] * 3
    ledger = sim.ledger("kaleyra")
    assert {e["unicode"] for e in ledger} == {"0"}
    # the simulator counts parts with the reference codec: they agree with the dispatcher's kernels
    assert {e["parts"] for e in ledger} == {r["parts"] for r in results} == {1}


# -- rejected before sending --------------------------------------------------------------------------------

def test_body_over_4000_characters_is_rejected_before_sending(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 3, template="x" * 4001)
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "too_long")] * 3
    assert requests_made(sim) == 0


def test_unknown_route_type_is_rejected_before_sending(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 2, options={"type": "PROMO"})
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "bad_type")] * 2
    assert requests_made(sim) == 0


# -- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("var, value", [("KALEYRA_API_KEY", "A" + "f" * 32), ("KALEYRA_SID", "HXAP1699999999IN")])
def test_bad_credentials_halt_the_provider(sim, tmp_path, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    results = blast(tmp_path, sim.url("kaleyra"), 5, options={"type": "OTP"}, provider={"concurrency": 1})
    assert [r["status"] for r in results] == ["deferred"] * 5
    assert {r["code"] for r in results} == {"AUTH"}
    assert all("Invalid api-key" in r["error"] for r in results)
    assert requests_made(sim) == 1  # the first answer halts the rest
    assert sim.ledger("kaleyra") == []


def test_validation_error_is_final(sim, tmp_path):
    # (a bad sender id no longer gets this far: it is a config error at load, tests/test_input_checks.py)
    results = blast(tmp_path, sim.url("kaleyra"), 5, options={"type": "TXN", "flash": 2})
    assert [(r["status"], r["code"], r["attempts"]) for r in results] == [("failed", "E606", 1)] * 5
    assert requests_made(sim) == 1
    assert sim.ledger("kaleyra") == []


def test_429_is_retried_until_sent(sim, tmp_path):
    sim.config("kaleyra", rate=3)
    results = blast(tmp_path, sim.url("kaleyra"), 10, options={"type": "OTP"},
                    provider={"rate": 40, "max_attempts": 20})
    assert [r["status"] for r in results] == ["sent"] * 10
    stats = sim.stats("kaleyra")
    assert stats["rate_limited"] > 0
    assert stats["max_window"] <= 3
    assert_ledger_matches(sim, results)


def test_5xx_is_retried_then_sent_exactly_once(sim, tmp_path):
    sim.config("kaleyra", error_rate=0.4)
    results = blast(tmp_path, sim.url("kaleyra"), 20, options={"type": "OTP"}, provider={"max_attempts": 20})
    assert [r["status"] for r in results] == ["sent"] * 20
    assert sim.stats("kaleyra")["errors_injected"] > 0
    assert any(r["attempts"] > 1 for r in results)
    assert_ledger_matches(sim, results)


def test_running_out_of_credit_halts_the_rest(sim, tmp_path):
    sim.config("kaleyra", credits=3)
    results = blast(tmp_path, sim.url("kaleyra"), 6, options={"type": "OTP"}, provider={"concurrency": 1})
    assert [r["status"] for r in results] == ["sent"] * 3 + ["deferred"] * 3
    assert {r["code"] for r in results[3:]} == {"NO-CREDITS"}
    assert requests_made(sim) == 4
    assert_ledger_matches(sim, results)


# -- delivery reports -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["callback-post", "callback-get", "dlrurl"])
def test_delivery_reports_reach_the_callback(sim, tmp_path, how):
    with Receiver() as rx:
        url = rx.url + "/dlr"
        provider = {"callback-post": {"callback_url": url},
                    "callback-get": {"callback_url": url, "callback_method": "GET"},
                    "dlrurl": {"dlr_url": url}}[how]
        results = blast(tmp_path, sim.url("kaleyra"), 30, provider=provider)
        assert [r["status"] for r in results] == ["sent"] * 30
        got = rx.wait(30, timeout=15)
    assert len(got) == 30
    method = "POST" if how == "callback-post" else "GET"
    assert {g["method"] for g in got} == {method}
    reports = [g["data"] if method == "POST" else g["query"] for g in got]
    assert sorted(rep["message_id"] for rep in reports) == sorted(r["message_id"] for r in results)
    by_id = {r["message_id"]: r for r in results}
    for rep in reports:
        assert rep["status"] == "Delivered"
        assert rep["recipient"] == by_id[rep["message_id"]]["to"].lstrip("+")


def test_status_api_knows_the_sent_messages(sim, tmp_path):
    results = blast(tmp_path, sim.url("kaleyra"), 3)
    ids = [r["message_id"] for r in results]
    status, body = call(f"{sim.url('kaleyra')}/v1/{SID}/messages/status?message_ids={','.join(ids)}", method="GET")
    assert status == 200
    assert [(d["campaign_id"], d["status"]) for d in body["data"]] == [(i, "Delivered") for i in ids]


# -- the simulator's rules, asked directly ---------------------------------------------------------------------

def _form(n: int, **kw: str) -> dict[str, str]:
    return {"to": ",".join(number(i) for i in range(n)), "body": "Hello", "sender": "KLRHXA", "type": "TXN", **kw}


@pytest.mark.parametrize("form, status, code", [
    (_form(101), 400, "E405"),
    (_form(100), 202, None),
    (_form(2, type="OTP"), 400, "E404"),
    (_form(2, type="DEFAULT"), 400, "E400"),
    (_form(1, type="OTP"), 202, None),
    ({k: v for k, v in _form(1).items() if k != "type"}, 400, "E611"),
    (_form(1, type="PROMO"), 400, "E615"),
    (_form(1, body=""), 400, "E601"),
    (_form(1, body="x" * 4001), 400, "E401"),
    (_form(1, sender=""), 400, "E602"),
    (_form(1, sender="A!"), 400, "E619"),
    (_form(1, unicode="2"), 400, "E604"),
    (_form(1, body="Привет", unicode="0"), 400, "E604"),
    (_form(1, flash="yes"), 400, "E606"),
    (_form(1, ref="a-b"), 400, "E608"),
    (_form(1, time="01-01-2000 10:00:00"), 400, "E402"),
    (_form(1, callback="{not json"), 400, "INVALID-CALLBACK"),
    ({**_form(1), "to": "12,abc"}, 400, "E406"),
    ({**_form(0), "to": ""}, 400, "E600"),
])
def test_simulator_validation(sim, form, status, code):
    got, body = call(f"{sim.url('kaleyra')}/v1/{SID}/messages", form)
    assert got == status, body
    assert body.get("code") == code
    if status == 202:
        assert len(body["data"]) == body["totalCount"] == len(form["to"].split(","))


def test_simulator_caps_mkt_at_max_batch_and_drops_unreadable_numbers(sim):
    sim.config("kaleyra", max_batch=5)
    status, body = call(f"{sim.url('kaleyra')}/v1/{SID}/sms", _form(6, type="MKT"))
    assert (status, body["code"]) == (400, "E400")
    form = _form(4, type="MKT")
    form["to"] += ",12"
    status, body = call(f"{sim.url('kaleyra')}/v1/{SID}/sms", form)
    assert status == 202
    assert body["totalCount"] == 4
    assert [d["recipient"] for d in body["data"]] == [number(i).lstrip("+") for i in range(4)]


def test_simulator_auth_and_json_bodies(sim):
    url = f"{sim.url('kaleyra')}/v1/{SID}/messages"
    assert call(url, _form(1), key="")[0] == 401
    assert call(url, _form(1), key="A" + "0" * 32)[0] == 401
    assert call(f"{sim.url('kaleyra')}/v1/HXAP1699999999IN/messages", _form(1))[0] == 401
    status, body = call(url, json_body={**_form(2), "to": [number(0), number(1)]})
    assert status == 202 and body["totalCount"] == 2


# -- parse() on crafted answers ------------------------------------------------------------------------------------

def provider(**kw: Any) -> Kaleyra:
    s = KaleyraSettings(url="http://127.0.0.1:9", sid_env="KALEYRA_SID", api_key_env="KALEYRA_API_KEY", **kw)
    return Kaleyra("k", s)


def msgs(n: int, route: str = "TXN", text: str = "Hello", encoding: str = "GSM-7", **options: Any) -> list[Message]:
    content = Content("sms", None, "KLRHXA", options={"type": route, **options})
    return [Message(i, f"r{i}", number(i), text, {}, content=content, encoding=encoding, parts=1) for i in range(n)]


def answer(numbers: list[str], rid: str = "req-1") -> bytes:
    return orjson.dumps({"id": rid, "totalCount": len(numbers), "error": {},
                         "data": [{"message_id": f"{rid}:{i}", "recipient": n} for i, n in enumerate(numbers, 1)]})


def test_parse_pairs_ids_by_number_and_rejects_dropped_numbers():
    batch = msgs(4)
    numbers = [number(2).lstrip("+"), number(0).lstrip("+"), number(3)]  # out of order, one missing
    out = provider().parse(batch, 202, {}, answer(numbers))
    assert [o.verdict for o in out] == [Verdict.SENT, Verdict.REJECTED, Verdict.SENT, Verdict.SENT]
    assert [o.message_id for o in out] == ["req-1:2", None, "req-1:1", "req-1:3"]
    assert out[1].code == "E406"
    assert {o.trace_id for o in out} == {"req-1"}


def test_parse_duplicate_numbers_each_get_an_id():
    batch = msgs(2)
    batch[1].to = batch[0].to
    out = provider().parse(batch, 200, {}, answer([batch[0].to, batch[0].to]))
    assert [o.message_id for o in out] == ["req-1:1", "req-1:2"]


def test_parse_without_recipients_pairs_by_position():
    body = orjson.dumps({"id": "r", "data": [{"message_id": "r:1"}, {"message_id": "r:2"}], "error": {}})
    out = provider().parse(msgs(2), 202, {}, body)
    assert [(o.verdict, o.message_id) for o in out] == [(Verdict.SENT, "r:1"), (Verdict.SENT, "r:2")]


def test_parse_accepted_without_data_is_sent_without_ids():
    out = provider().parse(msgs(2), 202, {}, orjson.dumps({"id": "c-1", "code": "E101", "message": "Campaign Accepted"}))
    assert [(o.verdict, o.message_id, o.trace_id) for o in out] == [(Verdict.SENT, None, "c-1")] * 2


@pytest.mark.parametrize("status, code, verdict", [
    (500, "E403", Verdict.RETRY), (429, "E429", Verdict.RETRY), (400, "E403", Verdict.RETRY),
    (400, "E102", Verdict.HALT), (402, "NO-CREDITS", Verdict.HALT), (401, "AUTH", Verdict.HALT),
    (400, "E406", Verdict.REJECTED), (400, "E401", Verdict.REJECTED),
    (400, "E619", Verdict.FAILED), (400, "E405", Verdict.FAILED), (400, "E402", Verdict.FAILED),
])
def test_parse_classifies_e_codes(status, code, verdict):
    body = orjson.dumps({"code": code, "message": "text", "data": [], "error": {"x": "text"}})
    out = provider().parse(msgs(3), status, {"Retry-After": "2"}, body)
    assert len(out) == 3
    assert {(o.verdict, o.code, o.error) for o in out} == {(verdict, code, "text")}
    if verdict == Verdict.RETRY:
        assert out[0].retry_after == 2.0


@pytest.mark.parametrize("status, verdict", [(502, Verdict.RETRY), (401, Verdict.HALT), (404, Verdict.FAILED)])
def test_parse_non_json_answers_fall_back_to_http_status(status, verdict):
    out = provider().parse(msgs(2), status, {}, b"<html>gateway</html>")
    assert [o.verdict for o in out] == [verdict] * 2


def test_parse_2xx_with_an_error_object_is_an_error():
    body = orjson.dumps({"code": "E602", "message": "Sender-Id is required", "error": {"sender": "required"}})
    assert {o.verdict for o in provider().parse(msgs(2), 200, {}, body)} == {Verdict.FAILED}


# -- build() and the batch size -----------------------------------------------------------------------------------

def test_build_form_and_headers():
    p = provider(callback_url="https://example.org/dlr", callback_method="get")
    batch = msgs(3, text="Привет", encoding="UCS-2", template_id="T1", ref="abc")
    req = p.build(batch)
    assert req.method == "POST"
    assert req.url == f"http://127.0.0.1:9/v1/{SID}/messages"
    assert req.headers["api-key"] == KEY
    form = dict(urllib.parse.parse_qsl(req.body.decode()))
    assert form["to"] == ",".join(m.to for m in batch)
    assert (form["body"], form["sender"], form["type"], form["unicode"]) == ("Привет", "KLRHXA", "TXN", "1")
    assert (form["template_id"], form["ref"]) == ("T1", "abc")
    cb = orjson.loads(form["callback"])
    assert (cb["url"], cb["method"], cb["retry"]["count"]) == ("https://example.org/dlr", "GET", "3")
    assert provider(endpoint="sms").build(msgs(1)).url.endswith(f"/v1/{SID}/sms")


@pytest.mark.parametrize("route, size", [("MKT", 1000), ("TXN", 100), ("OTP", 1), ("DEFAULT", 1)])
def test_batch_size_follows_the_route_type(route, size):
    p = provider()
    assert p.batch_size == 1000
    batch = msgs(2, route=route)
    assert all(p.check(m) is None for m in batch)
    assert p.batch_size == size
    keys = {p.batch_key(m) for m in batch}
    assert len(keys) == (2 if size == 1 else 1)


def test_batch_size_setting_caps_every_route():
    p = provider(batch_size=50)
    assert p.batch_size == 50
    p.check(msgs(1, route="TXN")[0])
    assert p.batch_size == 50
    p.check(msgs(1, route="OTP")[0])
    assert p.batch_size == 1


def test_build_refuses_more_numbers_than_the_route_allows():
    with pytest.raises(ValueError, match="OTP"):
        provider().build(msgs(2, route="OTP"))


# -- the seed's E402 window and the one TXN batching setting ----------------------------------------------

def _ahead(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%d-%m-%Y %H:%M:%S")


def test_schedule_gap_is_the_seeds_5_minutes(sim):
    """Seed: "E402 | Invalid schedule time. Minimum 5 minutes time gap is required and 3 months from now"."""
    url = f"{sim.url('kaleyra')}/v1/{SID}/messages"
    status, body = call(url, _form(1, time=_ahead(7)))
    assert status == 202, body  # 7 minutes ahead: accepted (the old 15-minute simulator refused it)
    status, body = call(url, _form(1, time=_ahead(3)))
    assert (status, body["code"]) == (400, "E402")
    assert body["message"].startswith("Invalid schedule time. Minimum 5 minutes time gap is required")
    status, body = call(url, _form(1, time=_ahead(60 * 24 * 100)))
    assert (status, body["code"]) == (400, "E402")


def test_txn_batch_is_one_setting(sim, tmp_path):
    """E400 ("bulk SMS type should be MKT") against E405 ("TXN ... not more than 100"): 100 by default,
    and an account that enforces E400 sets `txn_batch = 1`."""
    assert provider().route_limits["TXN"] == 100
    results = blast(tmp_path, sim.url("kaleyra"), 5, provider={"txn_batch": 1})
    assert [r["status"] for r in results] == ["sent"] * 5
    assert requests_made(sim) == 5
    assert provider(txn_batch=40).build(msgs(40)).body.count(b"%2C") == 39  # 40 comma-separated numbers
    with pytest.raises(ValueError, match="at most 40"):
        provider(txn_batch=40).build(msgs(41))


@pytest.mark.parametrize("value", [0, 101])
def test_txn_batch_outside_e405_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"providers\.k\.txn_batch: .* between 1 and 100"):
        provider(txn_batch=value)


def test_the_inferred_bodies_can_be_renamed_from_the_config():
    """The seed has no bodies: a user who knows the real names replaces them in `[providers.X.api]`."""
    p = provider(api={"items": "messages", "item_id": "id", "item_to": "number", "request_id": "request",
                      "to": "mobile"})
    body = orjson.dumps({"request": "r-1", "messages": [{"id": "m-0", "number": number(0)},
                                                        {"id": "m-1", "number": number(1)}]})
    outs = p.parse(msgs(2), 202, {}, body)
    assert [(o.verdict, o.message_id, o.trace_id) for o in outs] == [(Verdict.SENT, "m-0", "r-1"),
                                                                     (Verdict.SENT, "m-1", "r-1")]
    form = urllib.parse.parse_qs(p.build(msgs(2)).body.decode())
    assert form["mobile"] == [f"{number(0)},{number(1)}"] and "to" not in form


def test_a_wrong_name_in_the_api_table_is_a_config_error():
    with pytest.raises(ConfigError, match=r"providers\.k\.api\.itemz: unknown name; known: "):
        provider(api={"itemz": "messages"})
