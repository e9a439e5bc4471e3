"""SmsGateway24: the adapter driven end to end against its simulator, plus parse() on crafted answers.

Bulk results carry no ids, so they are paired with the simulator's ledger through `customerid`
(the record's seq); status webhooks are paired through `sms_id` -> ledger -> `customerid`.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from blastkit import Receiver, quiet_blast, with_deferred, write_toml

from dispatcher.model import Content, Message
from dispatcher.providers.base import Verdict
from dispatcher.providers.smsgateway24 import SmsGateway24, SmsGateway24Settings
from tests.conftest import CREDENTIALS

pytestmark = pytest.mark.timeout(60)

KIND = "smsgateway24"


# -- helpers ------------------------------------------------------------------------------------------



def number(i: int) -> str:
    return f"+4915{i:09d}"


def blast(tmp: Path, url: str, n: int, *, template: str = "Hi {name}, your parcel is on its way",
          options: dict | None = None, provider: dict | None = None, channel: str = "sms",
          texts: list[str] | None = None) -> list[dict]:
    """Write an audience of n and a campaign, blast it, return the results (in seq order)."""
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "audience.csv", "w") as f:
        f.write("id,phone,name\n")
        for i in range(n):
            f.write(f"r{i},{number(i)},{texts[i] if texts is not None else f'name{i}'}\n")
    p = {"type": KIND, "url": url, "email_env": "SMSGATEWAY24_EMAIL", "password_env": "SMSGATEWAY24_PASSWORD",
         "rate": 10, "concurrency": 2, "backoff_base": 0.01, "backoff_max": 0.5, "max_attempts": 8, "timeout": 5}
    p.update(provider or {})
    write_toml(tmp / "campaign.toml", {
        "source": {"path": "audience.csv", "recipient": "phone", "id": "id"},
        "message": {"channel": channel, "template": template,
                    "options": options if options is not None else {"device_id": 260, "sim": 1}},
        "providers": {"phone": p}, "sinks": [{"type": "jsonl", "path": "results.jsonl"}]})
    code, summary = quiet_blast(tmp / "campaign.toml")
    assert code in (0, 1, 3), f"blast exited {code}"
    out = tmp / "results.jsonl"
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    return with_deferred(rows, {i + 2: f"r{i}" for i in range(n)}, summary)


def control(sim, **settings: Any) -> dict:
    """The simulator's stand-in for the web UI: webhook, phone speed, token lifetime."""
    req = urllib.request.Request(sim.url(KIND) + "/_sim/gateway", data=orjson.dumps(settings), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read())


def api(sim, verb: str, fields: dict | None = None, *, json_body: Any = None) -> tuple[int, dict]:
    headers = {}
    if json_body is not None:
        data, headers["Content-Type"] = orjson.dumps(json_body), "application/json"
    else:
        data = urllib.parse.urlencode(fields or {}).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(f"{sim.url(KIND)}/getdata/{verb}", data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, orjson.loads(r.read())


def token(sim) -> str:
    _, body = api(sim, "gettoken", {"email": CREDENTIALS["SMSGATEWAY24_EMAIL"],
                                    "pass": CREDENTIALS["SMSGATEWAY24_PASSWORD"]})
    return body["token"]


def assert_ledger_matches(sim, results: list[dict]) -> list[dict]:
    """One `sent` result per ledger entry, paired by customerid = seq: same number, nothing twice."""
    ledger = sim.ledger(KIND)
    sent = [r for r in results if r["status"] == "sent"]
    customers = [e["customerid"] for e in ledger]
    assert len(customers) == len(set(customers)), "a message was queued twice"
    assert sorted(customers) == sorted(r["seq"] for r in sent)
    by_customer = {e["customerid"]: e for e in ledger}
    for r in sent:
        assert r["meta"]["customerid"] == r["seq"]
        assert by_customer[r["seq"]]["sendto"] == r["to"]
    return ledger


# -- bulk and customerid ----------------------------------------------------------------------------------

def test_bulk_results_are_paired_through_customerid(sim, tmp_path):
    results = blast(tmp_path, sim.url(KIND), 150)
    assert [r["status"] for r in results] == ["sent"] * 150
    assert [r["message_id"] for r in results] == [None] * 150  # the bulk answer has no ids: said honestly
    assert sim.stats(KIND)["requests"] == 2  # gettoken + one addalotofsms
    ledger = assert_ledger_matches(sim, results)
    by_customer = {e["customerid"]: e for e in ledger}
    for i, r in enumerate(results):  # each text went to its own number
        e = by_customer[r["seq"]]
        assert (e["body"], e["device_id"], e["sim"], e["channel"], e["endpoint"]) == (
            f"Hi name{i}, your parcel is on its way", 260, 1, "sms", "addalotofsms")


def test_bulk_requests_respect_batch_size(sim, tmp_path):
    results = blast(tmp_path, sim.url(KIND), 120, provider={"batch_size": 50})
    assert [r["status"] for r in results] == ["sent"] * 120
    assert sim.stats(KIND)["requests"] == 1 + 3
    assert_ledger_matches(sim, results)


def test_customerid_finds_a_bulk_message_through_getallsms(sim, tmp_path):
    sim.config(KIND, rate=1000)
    results = blast(tmp_path, sim.url(KIND), 5)
    tok = token(sim)
    for r in results:
        _, body = api(sim, "getallsms", {"token": tok, "customerid": r["seq"]})
        assert body["error"] == 0 and body["count"] == 1
        (row,) = body["smss"].values()
        assert row["sendto"] == r["to"]
        _, st = api(sim, "getsmsstatus", {"token": tok, "sms_id": row["id"]})
        assert st["error"] == 0 and st["sms_id"] == row["id"]


def test_single_mode_returns_the_gateway_ids(sim, tmp_path):
    results = blast(tmp_path, sim.url(KIND), 5, provider={"bulk": False})
    assert [r["status"] for r in results] == ["sent"] * 5
    assert sim.stats(KIND)["requests"] == 1 + 5
    ledger = assert_ledger_matches(sim, results)
    assert {e["endpoint"] for e in ledger} == {"addsms"}
    assert sorted(str(e["sms_id"]) for e in ledger) == sorted(r["message_id"] for r in results)


# -- channels and SIM slots ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channel, options, sim_slot", [
    ("whatsapp", {"device_id": 261, "sim": 3}, 3),
    ("whatsapp", {"device_id": 261}, 2),
    ("rcs", {"device_id": 260}, 4),
    ("sms", {"device_id": 260}, 0),
])
def test_channels_use_their_sim_slots(sim, tmp_path, channel, options, sim_slot):
    results = blast(tmp_path, sim.url(KIND), 4, channel=channel, options=options)
    assert [r["status"] for r in results] == ["sent"] * 4
    ledger = assert_ledger_matches(sim, results)
    assert {(e["channel"], e["sim"], e["device_id"]) for e in ledger} == {(channel, sim_slot, options["device_id"])}


def test_a_slot_that_does_not_carry_the_channel_is_rejected_before_sending(sim, tmp_path):
    results = blast(tmp_path, sim.url(KIND), 3, options={"device_id": 260, "sim": 3})
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "bad_option")] * 3
    assert "WhatsApp" not in results[0]["error"] and "sms" in results[0]["error"]
    assert sim.ledger(KIND) == []


def test_an_empty_text_is_rejected_before_sending(sim, tmp_path):
    # `default:` (nothing) lets the value be empty, so the text is empty and the provider's own check speaks
    results = blast(tmp_path, sim.url(KIND), 3, template="{name|default:}", texts=["hello", "", "bye"])
    assert [(r["status"], r["code"]) for r in results] == [("sent", None), ("rejected", "empty_body"), ("sent", None)]
    assert_ledger_matches(sim, results)


# -- errors ------------------------------------------------------------------------------------------------------

def test_bad_login_halts_the_provider(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("SMSGATEWAY24_PASSWORD", "wrong")
    results = blast(tmp_path, sim.url(KIND), 5)
    assert [(r["status"], r["code"]) for r in results] == [("deferred", "auth")] * 5
    assert {r["error"] for r in results} == {"authentication failed: LoginRefused"}
    assert sim.stats(KIND)["requests"] == 1  # gettoken only
    assert sim.ledger(KIND) == []


def test_error_1_in_a_200_is_a_failure_not_a_success(sim, tmp_path):
    results = blast(tmp_path, sim.url(KIND), 5, options={"device_id": 999}, provider={"batch_size": 2,
                                                                                     "concurrency": 1})
    assert [(r["status"], r["code"]) for r in results] == [("deferred", "device")] * 5
    assert "Device 999 not found" in results[0]["error"]
    assert sim.stats(KIND)["requests"] == 2  # gettoken + the first batch: an unknown phone halts the rest
    assert sim.ledger(KIND) == []


def test_an_expired_token_is_refreshed_and_the_batch_resent(sim, tmp_path):
    sim.config(KIND, rate=1000)
    control(sim, token_uses=1)  # every token answers one call, then "Token is invalid or expired"
    results = blast(tmp_path, sim.url(KIND), 40, provider={"batch_size": 10, "concurrency": 1, "rate": 100})
    assert [r["status"] for r in results] == ["sent"] * 40
    assert [r["attempts"] for r in results] == [1] * 40  # a refresh is not an attempt
    # gettoken, batch 1; then for each of batches 2-4: refused, gettoken, resent
    assert sim.stats(KIND)["requests"] == 2 + 3 * 3
    assert_ledger_matches(sim, results)


def test_a_token_that_never_works_fails_after_two_refreshes(sim, tmp_path):
    sim.config(KIND, rate=1000)
    control(sim, token_uses=-1)  # every token is already used up
    results = blast(tmp_path, sim.url(KIND), 3, provider={"rate": 100, "concurrency": 1})
    assert [(r["status"], r["code"]) for r in results] == [("failed", "token")] * 3
    assert sim.ledger(KIND) == []


def test_an_expired_token_in_words_we_do_not_know_is_refreshed(sim, tmp_path):
    """The seed gives `error: 1` and a free text only: an expiry that never says "token" must not
    fail the batch; the unknown text makes the adapter log in again once, and the batch goes."""
    sim.config(KIND, rate=1000)
    control(sim, token_uses=1, expired_text="Sessão expirada")
    results = blast(tmp_path, sim.url(KIND), 30, provider={"batch_size": 10, "concurrency": 1, "rate": 100})
    assert [r["status"] for r in results] == ["sent"] * 30
    assert_ledger_matches(sim, results)


def test_an_unknown_error_that_persists_fails_after_a_login_and_retries(sim, tmp_path):
    sim.config(KIND, rate=1000)
    control(sim, token_uses=-1, expired_text="Erro 57")  # every token refused, in words no hint knows
    results = blast(tmp_path, sim.url(KIND), 3, provider={"rate": 100, "concurrency": 1, "max_attempts": 3})
    assert [(r["status"], r["code"], r["attempts"]) for r in results] == [("failed", "unrecognised", 3)] * 3
    assert "not recognised" in results[0]["error"] and "Erro 57" in results[0]["error"]
    # gettoken, the batch (unknown text), gettoken again (not an attempt), then 3 attempts with backoff
    assert sim.stats(KIND)["requests"] == 2 + 1 + 3
    assert sim.ledger(KIND) == []


def test_429_is_retried_until_sent(sim, tmp_path):
    sim.config(KIND, rate=3)
    results = blast(tmp_path, sim.url(KIND), 30, provider={"batch_size": 5, "rate": 40, "concurrency": 4,
                                                           "max_attempts": 20})
    assert [r["status"] for r in results] == ["sent"] * 30
    stats = sim.stats(KIND)
    assert stats["rate_limited"] > 0 and stats["max_window"] <= 3
    assert_ledger_matches(sim, results)


def test_5xx_is_retried_then_sent_exactly_once(sim, tmp_path):
    sim.config(KIND, error_rate=0.3)
    results = blast(tmp_path, sim.url(KIND), 40, provider={"batch_size": 4, "max_attempts": 20})
    assert [r["status"] for r in results] == ["sent"] * 40
    stats = sim.stats(KIND)
    assert stats["errors_injected"] > 0
    # every injected 5xx was answered by a retry (of a batch, or of the token call): nothing given up
    assert stats["requests"] >= 1 + 40 // 4 + stats["errors_injected"]
    assert_ledger_matches(sim, results)


def test_running_out_of_credit_halts_the_rest(sim, tmp_path):
    sim.config(KIND, credits=40)
    results = blast(tmp_path, sim.url(KIND), 100, provider={"batch_size": 20, "concurrency": 1})
    assert [r["status"] for r in results] == ["sent"] * 40 + ["deferred"] * 60
    assert {r["code"] for r in results[40:]} == {"no_credit"}
    assert sim.stats(KIND)["requests"] == 1 + 3
    assert_ledger_matches(sim, results)


# -- delivery reports ------------------------------------------------------------------------------------------

def test_status_webhooks_reach_the_receiver(sim, tmp_path):
    with Receiver() as rx:
        control(sim, webhook=rx.url + "/hook", phone_rate=500)
        results = blast(tmp_path, sim.url(KIND), 20)
        assert [r["status"] for r in results] == ["sent"] * 20
        ledger = assert_ledger_matches(sim, results)
        got = [g["data"] for g in rx.wait(lambda g: sum(1 for h in g if h["data"]["status_id"] == 7) >= 20,
                                           timeout=15)]
    delivered = [h for h in got if h["status_id"] == 7]
    assert len(delivered) == 20
    by_sms = {e["sms_id"]: e for e in ledger}
    by_seq = {r["seq"]: r for r in results}
    for h in delivered:  # sms_id -> ledger -> customerid -> the record
        entry = by_sms[h["sms_id"]]
        assert by_seq[entry["customerid"]]["to"] == h["sendto"]
        assert (h["device_id"], h["channel_id"], h["status_message"]) == (260, 1, "delivered")
        assert h["senttime"]
    assert {h["status_id"] for h in got} == {2, 6, 7}


# -- the simulator's rules, asked directly ---------------------------------------------------------------------

def test_simulator_bulk_rules(sim):
    sim.config(KIND, max_batch=3)
    tok = token(sim)
    item = {"sendto": number(1), "body": "hi", "device_id": 260, "sim": 0, "customerid": 7}
    _, body = api(sim, "addalotofsms", {"datajson": orjson.dumps({"token": tok, "smsdata": [item] * 4}).decode()})
    assert body["error"] == 1 and "at most 3" in body["message"]
    bad = [item, {**item, "sendto": ""}]
    _, body = api(sim, "addalotofsms", {"datajson": orjson.dumps({"token": tok, "smsdata": bad}).decode()})
    assert body == {"error": 1, "message": "smsdata[1]: sendto is required"}
    _, body = api(sim, "addalotofsms", {"datajson": "{oops"})
    assert body["error"] == 1
    _, body = api(sim, "addalotofsms", {"datajson": orjson.dumps({"token": "0" * 32, "smsdata": [item]}).decode()})
    assert body == {"error": 1, "message": "Token is invalid or expired"}
    assert sim.ledger(KIND) == []
    status, body = api(sim, "addalotofsms", json_body={"token": tok, "smsdata": [item, {**item, "customerId": 8}]})
    assert (status, body) == (200, {"error": 0, "message": "Sms has been saved successfully"})
    assert [e["customerid"] for e in sim.ledger(KIND)] == [7, 7]  # `customerid` wins over the SDK's `customerId`


def test_simulator_addsms_rules(sim):
    tok = token(sim)
    ok = {"token": tok, "sendto": f"{number(1)},{number(2)}", "body": "hi", "device_id": 260}
    _, body = api(sim, "addsms", ok)
    assert body["error"] == 0 and isinstance(body["sms_id"], int)
    assert [e["sendto"] for e in sim.ledger(KIND)] == [number(1), number(2)]
    for change, text in [({"device_id": ""}, "device_id is required"), ({"device_id": 1}, "Device 1 not found"),
                         ({"sim": 6}, "sim must be"), ({"body": ""}, "body is required"),
                         ({"timetosend": "tomorrow"}, "timetosend"), ({"customerid": "x"}, "customerid")]:
        _, body = api(sim, "addsms", {**ok, **change})
        assert body["error"] == 1 and text in body["message"], (change, body)
    _, body = api(sim, "gettoken", {"email": "demo@example.com", "pass": "nope"})
    assert body == {"error": 1, "message": "Login or password incorrect"}


# -- parse() on crafted answers ------------------------------------------------------------------------------------

def provider(**kw: Any) -> SmsGateway24:
    kw.setdefault("url", "http://127.0.0.1:9")
    s = SmsGateway24Settings(email_env="SMSGATEWAY24_EMAIL", password_env="SMSGATEWAY24_PASSWORD", **kw)
    return SmsGateway24("g", s)


def msgs(n: int, channel: str = "sms", **options: Any) -> list[Message]:
    content = Content(channel, None, options={"device_id": 260, **options})
    return [Message(i + 10, f"r{i}", number(i), f"text {i}", {}, channel=channel, content=content) for i in range(n)]


@pytest.mark.parametrize("message, verdict, code", [
    ("Token is invalid or expired", Verdict.REAUTH, "token"),
    ("Wrong token", Verdict.REAUTH, "token"),
    ("Faça login novamente", Verdict.REAUTH, "login"),
    ("Device 999 not found on this account", Verdict.HALT, "device"),
    ("Not enough credits: the subscription limit is reached", Verdict.HALT, "no_credit"),
])
def test_parse_error_1_in_a_200(message, verdict, code):
    for flag in (1, "1", True):
        out = provider().parse(msgs(3), 200, {}, orjson.dumps({"error": flag, "message": message}))
        assert [(o.verdict, o.code, o.error) for o in out] == [(verdict, code, message)] * 3


def test_an_unrecognised_error_logs_in_again_once_then_retries():
    p = provider()
    unknown = orjson.dumps({"error": 1, "message": "smsdata[3]: body is required"})
    first, again = p.parse(msgs(3), 200, {}, unknown), p.parse(msgs(3), 200, {}, unknown)
    assert [(o.verdict, o.code) for o in first] == [(Verdict.REAUTH, "unrecognised")] * 3
    assert [(o.verdict, o.code) for o in again] == [(Verdict.RETRY, "unrecognised")] * 3
    assert "not recognised" in again[0].error and "smsdata[3]: body is required" in again[0].error
    p.parse(msgs(1), 200, {}, b'{"error":0,"message":"Sms has been saved successfully"}')  # a success...
    assert p.parse(msgs(1), 200, {}, unknown)[0].verdict == Verdict.REAUTH  # ...earns the next one a login


def test_parse_bulk_success_has_no_ids_but_the_customerid():
    out = provider().parse(msgs(3), 200, {}, b'{"error":0,"message":"Sms has been saved successfully"}')
    assert [(o.verdict, o.message_id, dict(o.extra or {})) for o in out] == [
        (Verdict.SENT, None, {"customerid": 10}), (Verdict.SENT, None, {"customerid": 11}),
        (Verdict.SENT, None, {"customerid": 12})]


def test_parse_single_success_has_the_sms_id():
    out = provider(bulk=False).parse(msgs(1), 200, {}, b'{"error":0,"sms_id":62807347,"message":"ok"}')
    assert (out[0].verdict, out[0].message_id) == (Verdict.SENT, "62807347")


@pytest.mark.parametrize("status, body, verdict", [
    (429, b'{"error":1,"message":"Too many requests"}', Verdict.RETRY),
    (500, b'{"error":1,"message":"Internal server error"}', Verdict.RETRY),
    (502, b"<html>bad gateway</html>", Verdict.RETRY),
    (200, b"<html>maintenance</html>", Verdict.FAILED),
    (200, b'{"message":"no error field"}', Verdict.FAILED),
    (404, b"not found", Verdict.FAILED),
])
def test_parse_other_answers(status, body, verdict):
    out = provider().parse(msgs(2), status, {"Retry-After": "3"}, body)
    assert [o.verdict for o in out] == [verdict] * 2
    if verdict == Verdict.RETRY:
        assert out[0].retry_after == 3.0


def test_build_bulk_and_single_requests():
    p = provider(urgent=True)
    p._token = "t" * 32
    req = p.build(msgs(2, sim=1, timetosend="2030-01-01 10:00:00"))
    assert req.url == "http://127.0.0.1:9/getdata/addalotofsms"
    doc = orjson.loads(dict(urllib.parse.parse_qsl(req.body.decode()))["datajson"])
    assert doc["token"] == "t" * 32
    assert doc["smsdata"] == [
        {"sendto": number(i), "body": f"text {i}", "device_id": 260, "sim": 1, "customerid": 10 + i, "urgent": 1,
         "timetosend": "2030-01-01 10:00:00"} for i in range(2)]
    single = provider(bulk=False, url="http://h/getdata/")
    assert single.batch_size == 1
    single._token = "u" * 32
    req = single.build(msgs(1, channel="whatsapp", sim=3))
    assert req.url == "http://h/getdata/addsms"
    assert dict(urllib.parse.parse_qsl(req.body.decode())) == {
        "token": "u" * 32, "sendto": number(0), "body": "text 0", "device_id": "260", "sim": "3", "customerid": "10"}


def test_build_without_a_phone_says_so():
    p = provider()
    m = Message(1, "r1", number(1), "x", {}, content=Content("sms", None, options={}))
    assert p.check(m) == ("bad_option", "no phone: set options.device_id or providers.g.device_id")
    with pytest.raises(ValueError, match="no phone"):
        p.build([m])
