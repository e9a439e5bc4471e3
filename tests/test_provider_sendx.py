"""SendX (transactional email) end to end against its simulator, plus parse() on crafted answers."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from blastkit import Receiver, blast, call, sim_options

from dispatcher.model import Content, Message
from dispatcher.providers.base import Verdict
from dispatcher.providers.sendx import Sendx, SendxSettings
from dispatcher.render import compile_template

KIND = "sendx"
KEY = {"X-Team-ApiKey": "demo-team-key"}


def people(n: int, start: int = 1) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "email": f"user{i}@example.com", "name": f"Name{i}"} for i in range(start, start + n)]


def email(tmp: Path, url: str, rows: list[dict[str, str]], *, provider: dict[str, Any] | None = None,
          message: dict[str, Any] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    p = {"type": KIND, "url": url, "api_key_env": "SENDX_API_KEY", **(provider or {})}
    m = {"channel": "email", "sender": "news@example.com", "subject": "Your invoice", "template": "<p>Hi {name}</p>",
         "options": {"from_name": "ACME", "reply_to": "help@example.com", "name_field": "name"}, **(message or {})}
    return blast(tmp, rows, p, m, recipient="email")


def ledger_by_email(sim) -> dict[str, dict[str, Any]]:
    entries = sim.ledger(KIND)
    by = {e["to"]: e for e in entries}
    assert len(by) == len(entries), "an address accepted twice"
    return by


# -- end to end ---------------------------------------------------------------------------------------

def test_personalised_emails_go_one_per_request_and_are_queued(sim, tmp_path):
    code, by_id = email(tmp_path, sim.url(KIND), people(20))  # at the default 10 requests/s
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    assert all(r["message_id"] is None and r["parts"] is None for r in by_id.values())  # 202: queued, no id
    ledger = ledger_by_email(sim)
    assert set(ledger) == {r["to"] for r in by_id.values()}
    e = ledger["user3@example.com"]
    assert e["html"] == "<p>Hi Name3</p>" and e["name"] == "Name3" and e["subject"] == "Your invoice"
    assert e["from"] == "news@example.com" and e["replyTo"] == "help@example.com"
    stats = sim.stats(KIND)
    assert stats["requests"] == 20 and stats["rate_limited"] == 0 and stats["max_window"] <= 10


def test_sdk_answers_give_each_result_its_message_id(sim, tmp_path):
    sim_options(sim, KIND, compat="sdk")
    rows = [*people(6), {"id": "u", "email": "unsubscribed@example.com", "name": "Gone"}]
    code, by_id = email(tmp_path, sim.url(KIND), rows)
    assert code == 1
    gone = by_id["u"]
    assert gone["status"] == "rejected" and gone["code"] == "1" and "suppressed" in gone["error"]
    ledger = sim.ledger(KIND)
    sent = {r["message_id"]: r for r in by_id.values() if r["status"] == "sent"}
    assert len(ledger) == len(sent) == 6
    for e in ledger:
        assert sent[e["id"]]["to"] == e["to"]


def test_identical_emails_share_requests_up_to_50(sim, tmp_path):
    sim_options(sim, KIND, compat="sdk")
    code, by_id = email(tmp_path, sim.url(KIND), people(120), message={"template": "<p>Sale today</p>"},
                        provider={"batch_size": 500})  # capped at the module's 50
    assert code == 0
    assert sim.stats(KIND)["requests"] == 3
    ledger = sim.ledger(KIND)
    sent = {r["message_id"]: r for r in by_id.values()}
    assert len(ledger) == len(sent) == 120
    assert all(sent[e["id"]]["to"] == e["to"] for e in ledger)  # paired per recipient, not by position


def test_the_simulator_refuses_more_than_its_batch_cap(sim, tmp_path):
    sim.config(KIND, max_batch=20)
    code, by_id = email(tmp_path, sim.url(KIND), people(30), message={"template": "<p>Sale today</p>"})
    assert code == 1
    assert {(r["status"], r["code"], r["error"]) for r in by_id.values()} == {
        ("failed", "400", "to must hold at most 20 recipients")}
    assert sim.ledger(KIND) == []


def test_an_address_sendx_refuses_is_rejected_alone(sim, tmp_path):
    rows = [*people(10), {"id": "b1", "email": "x@y@example.com", "name": "X"},
            {"id": "b2", "email": "someone@localhost", "name": "Y"}]
    code, by_id = email(tmp_path, sim.url(KIND), rows, message={"template": "<p>Sale today</p>"})
    assert code == 1
    assert by_id["b1"]["status"] == by_id["b2"]["status"] == "rejected"
    assert by_id["b1"]["error"] == "Invalid email address: x@y@example.com" and by_id["b1"]["code"] == "400"
    assert sum(r["status"] == "sent" for r in by_id.values()) == 10
    assert len(sim.ledger(KIND)) == 10
    assert sim.stats(KIND)["requests"] == 3  # the ten together, each doubtful address on its own


def test_an_unverified_sender_fails_every_email(sim, tmp_path):
    code, by_id = email(tmp_path, sim.url(KIND), people(3), message={"sender": "news@elsewhere.test"})
    assert code == 1
    assert {(r["status"], r["code"], r["error"]) for r in by_id.values()} == {
        ("failed", "400", "From email domain elsewhere.test is not verified")}


def test_a_bad_key_halts_the_provider(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("SENDX_API_KEY", "not-the-key")
    code, by_id = email(tmp_path, sim.url(KIND), people(25), provider={"concurrency": 2})
    assert code == 3
    for r in by_id.values():
        assert r["status"] == "deferred" and r["code"] == "401"
        assert r["error"] == "The Team ID or API Key specified is not valid"
    assert "not-the-key" not in (tmp_path / "out" / "x.jsonl").read_text()
    assert sim.stats(KIND)["requests"] <= 2 and sim.ledger(KIND) == []


def test_the_plan_limit_halts_instead_of_retrying(sim, tmp_path):
    sim.config(KIND, credits=5)  # five emails left in the plan
    code, by_id = email(tmp_path, sim.url(KIND), people(20), provider={"concurrency": 1})
    assert code == 3
    sent = [r for r in by_id.values() if r["status"] == "sent"]
    failed = [r for r in by_id.values() if r["status"] == "deferred"]
    assert len(sent) == 5 and len(failed) == 15
    assert {(r["code"], r["error"]) for r in failed} == {
        ("plan_limit", "Email sending limit exceeded. Please upgrade your plan.")}
    assert all(r["attempts"] <= 1 for r in failed)
    assert sim.stats(KIND)["requests"] == 6  # five sent, one refused, nothing retried
    assert len(sim.ledger(KIND)) == 5


def test_a_rate_429_is_retried(sim, tmp_path):
    sim.config(KIND, rate=3)
    code, by_id = email(tmp_path, sim.url(KIND), people(9), provider={"rate": 30, "max_attempts": 30})
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    stats = sim.stats(KIND)
    assert stats["rate_limited"] > 0 and stats["max_window"] <= 3
    assert set(ledger_by_email(sim)) == {r["to"] for r in by_id.values()}
    assert max(r["attempts"] for r in by_id.values()) > 1


def test_server_errors_are_retried_then_sent(sim, tmp_path):
    sim_options(sim, KIND, compat="sdk")
    sim.config(KIND, error_rate=0.3, rate=50)
    code, by_id = email(tmp_path, sim.url(KIND), people(30), provider={"max_attempts": 12, "rate": 50})
    assert code == 0
    assert sim.stats(KIND)["errors_injected"] > 0
    ledger = sim.ledger(KIND)
    assert sorted(e["id"] for e in ledger) == sorted(r["message_id"] for r in by_id.values())


def test_stored_template_sends_values_as_custom_fields(sim, tmp_path):
    sim_options(sim, KIND, compat="sdk")
    options = {"template": "template_Welcome000000000000000", "reply_to": "help@example.com"}
    code, by_id = email(tmp_path, sim.url(KIND), people(4), message={"options": options})
    assert code == 0
    assert sim.stats(KIND)["requests"] == 1  # personalised through customFields: one request
    for e in sim.ledger(KIND):
        r = by_id[f"r{e['to'][4:-12]}"]
        assert e["id"] == r["message_id"] and e["customFields"] == {"name": r["id"].replace("r", "Name")}
        assert e["template"] == options["template"] and e["html"] is None


def test_an_unknown_stored_template_fails(sim, tmp_path):
    options = {"template": "template_Missing000000000000000"}
    code, by_id = email(tmp_path, sim.url(KIND), people(2), message={"options": options})
    assert code == 1
    assert {(r["code"], r["error"]) for r in by_id.values()} == {("404", "Template not found")}


def test_webhook_events_carry_the_message_ids(sim, tmp_path):
    sim_options(sim, KIND, compat="sdk")
    rows = [*people(5), {"id": "b", "email": "bounce7@example.com", "name": "B"}]
    with Receiver() as rx:
        status, _, hook = call(sim.url(KIND), "/api/v1/rest/webhook",
                               {"url": rx.url + "/sendx", "opened": True, "bounced": True}, KEY)
        assert status == 201 and hook["id"].startswith("webhook_") and hook["enabled"] is True
        code, by_id = email(tmp_path, sim.url(KIND), rows)
        got = rx.wait(len(rows))
    assert code == 0
    events = {g["data"]["provider_message_id"]: g["data"] for g in got}
    assert len(got) == len(rows) and set(events) == {r["message_id"] for r in by_id.values()}
    for r in by_id.values():
        e = events[r["message_id"]]
        assert e["contact_email"] == r["to"] and e["type"] == (5 if r["id"] == "b" else 7)


def test_a_suppressed_address_is_queued_then_dropped(sim, tmp_path):
    rows = [*people(2), {"id": "u", "email": "unsubscribed@example.com", "name": "Gone"}]
    with Receiver() as rx:
        call(sim.url(KIND), "/api/v1/rest/webhook", {"url": rx.url + "/sendx", "dropped": True}, KEY)
        code, by_id = email(tmp_path, sim.url(KIND), rows)
        got = rx.wait(1)
    assert code == 0 and by_id["u"]["status"] == "sent"  # 202 only means queued
    assert [(g["data"]["type"], g["data"]["contact_email"]) for g in got] == [(60, "unsubscribed@example.com")]


# -- the simulator on its own ------------------------------------------------------------------------

def test_simulator_documented_shapes(sim):
    url = sim.url(KIND) + "/api/v1/rest"
    good = {"from": {"email": "a@example.com"}, "to": [{"email": "b@example.com"}], "subject": "s", "htmlBody": "h"}
    status, _, body = call(url, "/send/email", good)
    assert status == 401 and body == {"status": "error", "message": "The Team ID or API Key specified is not valid"}
    status, _, body = call(url, "/send/email", good, KEY)
    assert status == 202 and body == {"status": "success", "message": "Email queued for delivery"}
    status, _, body = call(url, "/send/email", {**good, "to": []}, KEY)
    assert status == 400 and body["status"] == "error"
    status, _, body = call(url, "/send/email", {**good, "htmlBody": ""}, KEY)
    assert (status, body["message"]) == (400, "htmlBody is required")
    status, _, body = call(url, "/send/template", {**good, "template": "tpl_1"}, KEY)
    assert (status, body["message"]) == (400, "Invalid identifier format")
    req = urllib.request.Request(url + "/send/email", data=b"{not json", headers=KEY, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 422 and orjson.loads(e.value.read())["message"] == "Request body is not in proper format"
    _, _, hook = call(url, "/webhook", {"url": "http://127.0.0.1:9/x", "opened": True}, KEY)
    _, _, hooks = call(url, "/webhook", headers=KEY)
    assert [h["id"] for h in hooks] == [hook["id"]]
    status, _, _ = call(url, f"/webhook/{hook['id']}", headers=KEY, method="DELETE")
    assert status == 200 and call(url, "/webhook", headers=KEY)[2] == []


# -- parse() and build() on crafted answers ---------------------------------------------------------------

@pytest.fixture
def adapter() -> Sendx:
    return Sendx("mail", SendxSettings(url="https://api.sendx.io/api/v1/rest/", api_key_env="SENDX_API_KEY",
                                       batch_size=50))


def msgs(*addresses: str, text: str = "<b>Hi N{i}</b>", **options: Any) -> list[Message]:
    content = Content("email", compile_template("<b>Hi {name}</b>"), "news@example.com", "Hello", options)
    return [Message(i, f"r{i}", a, text.format(i=i), {"name": f"N{i}"}, {"name": f"N{i}"}, "mail", "email",
                    content=content) for i, a in enumerate(addresses)]


def test_build_follows_the_send_email_body(adapter):
    req = adapter.build(msgs("a@example.com", from_name="ACME", reply_to="r@example.com", headers={"X-C": 1}))
    assert req.url == "https://api.sendx.io/api/v1/rest/send/email"  # the documented base is not doubled
    assert req.headers["X-Team-ApiKey"] == "demo-team-key"
    assert orjson.loads(req.body) == {"from": {"email": "news@example.com", "name": "ACME"},
                                      "to": [{"email": "a@example.com"}], "subject": "Hello",
                                      "htmlBody": "<b>Hi N0</b>", "replyTo": {"email": "r@example.com"},
                                      "headers": {"X-C": "1"}}
    assert adapter.address == adapter.address_for("email") == "email"


def test_batch_key_groups_identical_emails_and_isolates_doubtful_addresses(adapter):
    a, b, c = msgs("a@example.com", "b@example.com", "c@localhost", text="<b>Sale</b>")
    assert adapter.batch_key(a) == adapter.batch_key(b) != adapter.batch_key(c)
    x, y = msgs("a@example.com", "b@example.com")  # personalised: one request each
    assert adapter.batch_key(x) != adapter.batch_key(y)


def test_parse_success_answers(adapter):
    batch = msgs("a@example.com", "B@example.com")
    assert [o.verdict for o in adapter.parse(batch, 202, {}, b'{"status":"success","message":"queued"}')] == \
        [Verdict.SENT] * 2
    sdk = [{"to": "b@example.com", "messageId": "m2", "errorCode": 0, "message": "OK"},
           {"to": "a@example.com", "messageId": None, "errorCode": 3, "message": "Recipient is suppressed"}]
    a, b = adapter.parse(batch, 200, {"X-Request-Id": "t1"}, orjson.dumps(sdk))
    assert (b.verdict, b.message_id, b.trace_id) == (Verdict.SENT, "m2", "t1")
    assert (a.verdict, a.code, a.error) == (Verdict.REJECTED, "3", "Recipient is suppressed")
    [o] = adapter.parse(batch[:1], 200, {}, b'{"status":"error","message":"odd"}')
    assert (o.verdict, o.error) == (Verdict.FAILED, "odd")


@pytest.mark.parametrize(("status", "body", "headers", "verdict", "code"), [
    (429, {"status": "error", "message": "Email sending limit exceeded. Please upgrade your plan."}, {},
     Verdict.HALT, "plan_limit"),
    (429, {"status": "error", "message": "Rate limit exceeded. Slow down your requests."}, {"Retry-After": "3"},
     Verdict.RETRY, "429"),
    (429, {"status": "error", "message": "Daily quota reached"}, {}, Verdict.HALT, "plan_limit"),
    (401, {"status": 401, "message": "The Team ID or API Key specified is not valid"}, {}, Verdict.HALT, "401"),
    (403, {"status": "error", "message": "Forbidden"}, {}, Verdict.HALT, "403"),
    (422, {"status": "error", "message": "Request body is not in proper format"}, {}, Verdict.FAILED, "422"),
    (404, {"status": "error", "message": "Template not found"}, {}, Verdict.FAILED, "404"),
    (500, {"status": "error", "message": "try again later"}, {}, Verdict.RETRY, "500"),
    (400, {"status": "error", "message": "subject is required"}, {}, Verdict.FAILED, "400"),
])
def test_parse_errors(adapter, status, body, headers, verdict, code):
    [o] = adapter.parse(msgs("a@example.com"), status, headers, orjson.dumps(body))
    assert (o.verdict, o.code, o.error) == (verdict, code, body["message"])
    assert o.retry_after == (3.0 if headers else None)


def test_a_refused_address_in_a_batch_only_rejects_that_recipient(adapter):
    batch = msgs("a@example.com", "b@example.com", "ab@example.com")
    outs = adapter.parse(batch, 400, {}, b'{"status":"error","message":"Invalid email address: b@example.com."}')
    assert [o.verdict for o in outs] == [Verdict.RETRY, Verdict.REJECTED, Verdict.RETRY]
