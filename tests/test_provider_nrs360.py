"""360nrs email, WhatsApp and voice end to end against the simulator (and SMS unchanged)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from blastkit import Receiver, blast, call, sim_options

from dispatcher.model import Batch, Content, Message
from dispatcher.providers.base import Accepted, Verdict
from dispatcher.providers.nrs360 import Nrs360, Nrs360Settings
from dispatcher.render import compile_template

KIND = "nrs360"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
WA_SENDER = "34666777555"  # registered in the simulator


def phones(n: int, start: int = 1) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "phone": f"+3460{i:07d}", "name": f"name{i}", "amount": f"{i}.50"}
            for i in range(start, start + n)]


def emails(n: int, start: int = 1) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "email": f"user{i}@example.com", "name": f"name{i}", "amount": f"{i}.50"}
            for i in range(start, start + n)]


MESSAGES = {
    "sms": {"channel": "sms", "sender": "ACME", "template": "Hi {name|capitalize}, you owe {amount|formatDotComma} EUR"},
    "email": {"channel": "email", "sender": "news@example.com", "subject": "Your invoice",
              "template": "<p>Hola {name|upper}, debes {amount|formatDotComma} EUR</p>",
              "options": {"from_name": "ACME", "reply_to": "help@example.com"}},
    "whatsapp": {"channel": "whatsapp", "sender": WA_SENDER, "template": "Hola {name}, debes {amount}",
                 "options": {"template_id": 123, "parameters": ["name", "amount"]}},
    "voice": {"channel": "voice", "template": "Hola {name}, debes {amount|formatDotComma} euros",
              "options": {"language": "es_ES", "gender": "F"}},
}


def send(tmp: Path, url: str, channel: str, rows: list[dict[str, str]], *, provider: dict[str, Any] | None = None,
         message: dict[str, Any] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    p = {"type": KIND, "url": url, "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD",
         "batch_size": 10, **(provider or {})}
    m = {**MESSAGES[channel], **(message or {})}
    tmp.mkdir(parents=True, exist_ok=True)
    return blast(tmp, rows, p, m, recipient="email" if channel == "email" else "phone")


def assert_ledger_matches(sim, by_id: dict[str, dict[str, Any]], channel: str) -> dict[str, dict[str, Any]]:
    """One ledger entry per `sent` result, with the same id and recipient; returned by record id."""
    ledger = sim.ledger(KIND)
    sent = {r["message_id"]: r for r in by_id.values() if r["status"] == "sent"}
    assert len(ledger) == len(sent)
    assert {e["id"] for e in ledger} == set(sent)
    out = {}
    for e in ledger:
        r = sent[e["id"]]
        assert e["channel"] == channel == r["channel"]
        assert e["to"] == (r["to"] if channel == "email" else r["to"].lstrip("+"))
        assert r["trace_id"] == str(e["sending"])  # the sendingId of the request
        out[r["id"]] = e
    return out


# -- SMS, unchanged ------------------------------------------------------------------------------------

def test_sms_still_goes_as_before(sim, tmp_path):
    code, by_id = send(tmp_path, sim.url(KIND), "sms", phones(30))
    assert code == 0
    ledger = assert_ledger_matches(sim, by_id, "sms")
    assert ledger["r3"]["text"] == "Hi Name3, you owe 3,50 EUR" and ledger["r3"]["parts"] == 1
    assert all(r["parts"] == 1 and r["encoding"] == "GSM-7" for r in by_id.values())
    assert sim.stats(KIND)["requests"] == 3


# -- {url|shorten}: the server shortens, parts are counted shortened -----------------------------------------

LONG = "https://shop.example.com/campaigns/spring-2026/offers?customer=abcdefghijklmnopqrstuvwxyz&utm_source=sms"


def test_shorten_reaches_the_server_and_parts_are_counted_short(sim, tmp_path):
    """Seed: "shorten | Returns a shortened url. It must be a valid url. | {url|shorten} | https://sms.tl/xxxxxx"."""
    rows = [{**r, "url": f"{LONG}&n={i}"} for i, r in enumerate(phones(4))]
    text = "Hi {name|capitalize}, your spring offer is ready, open it before Sunday: {url|shorten}" + " ok" * 20
    code, by_id = send(tmp_path, sim.url(KIND), "sms", rows, provider={"substitute": False},
                       message={"template": text})
    assert code == 0, by_id
    ledger = assert_ledger_matches(sim, by_id, "sms")
    e = ledger["r1"]
    assert re.fullmatch(r"Hi Name1, your spring offer is ready, open it before Sunday: https://sms\.tl/[0-9A-Za-z]{6}"
                        r"( ok){20}", e["text"]), e["text"]
    # 141 characters shortened (one part); the long link would need two: the server and the result agree
    assert e["parts"] == 1 and {r["parts"] for r in by_id.values()} == {1}
    assert sim.stats(KIND)["requests"] == 1  # sent as one template with `sub`, though substitute = false


def test_segment_and_dry_run_say_links_are_counted_shortened(sim, tmp_path, capsys):
    from dispatcher.cli import main
    rows = [{**r, "url": LONG} for r in phones(2)]
    send(tmp_path, sim.url(KIND), "sms", rows, message={"template": "Offer: {url|shorten}"})
    capsys.readouterr()
    assert main(["blast", str(tmp_path / "campaign.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "links     {url|shorten} counted shortened, as https://sms.tl/xxxxxx (21 characters)" in out
    assert main(["blast", str(tmp_path / "campaign.toml"), "--dry-run", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["links_counted_shortened"] == "https://sms.tl/xxxxxx" and report["parts"] == 2
    assert main(["segment", "--json", "Offer: {url|shorten}"]) == 0
    seg = orjson.loads(capsys.readouterr().out)
    assert seg["links_counted_shortened"] == 1 and seg["characters"] == len("Offer: https://sms.tl/xxxxxx")
    assert main(["segment", "--shorten", f"Offer: {LONG} " + "y" * 120]) == 0
    out = capsys.readouterr().out
    assert "links           1 counted shortened" in out and "parts           1 " in out


def shortening(template: str, url: str, parts: int) -> Message:
    """A message as the engine hands it over: rendered with the long link, counted with it."""
    tpl = compile_template(template)
    values = {"name": "n0", "url": url}
    text, slots = tpl.fill(values)
    return Message(0, "r0", "+34600000001", text, values, slots, "n", "sms", encoding="GSM-7", parts=parts,
                   content=Content("sms", tpl, "ACME"))


def test_shorten_goes_to_the_server_in_the_template(adapter):
    m = shortening("Hi {name|upper} {url|shorten} " + "z" * 120, LONG, parts=2)
    assert LONG in m.text and len(m.text) > 160
    assert adapter.check(m) is None
    assert (m.parts, m.encoding) == (1, "GSM-7")  # counted with https://sms.tl/xxxxxx, not the long link
    body = orjson.loads(adapter.build([m]).body)
    assert body["message"] == "Hi {name_upper} {url|shorten} " + "z" * 120
    assert body["sub"] == [{"name_upper": "N0", "url": LONG}] and body["parts"] == 1


def test_shorten_is_for_sms_only(adapter):
    """The seed documents the filters for SMS; an email or a call gets the link as it is."""
    batch = msgs("email", "<p>{name}: {code|shorten}</p>", "a@example.com", sender="news@example.com", subject="s")
    assert adapter.check(batch[0]) is None
    body = orjson.loads(adapter.build(batch).body)
    assert body["body"] == "<p>{name}: {code}</p>" and body["sub"] == [{"name": "n0", "code": "c0"}]


def test_shortened_link_keeps_a_message_within_15_parts(adapter):
    m = shortening("{url|shorten} " + "x" * 2273, "https://e.example/" + "p" * 200, parts=17)
    assert adapter.check(m) is None and m.parts == 15  # 21 + 1 + 2273 = 2295 septets: 15 parts of 153
    m = shortening("{url|shorten} " + "x" * 2274, "https://e.example/", parts=15)
    assert adapter.check(m)[0] == "too_many_parts" and m.parts == 16


# -- campaign parameters the seed constrains ------------------------------------------------------------------

SMS = {"to": ["34666555444"], "from": "TEST", "message": "SMS text message"}  # the seed's curl example
AUTH = {"Authorization": "Basic ZGVtbzpkZW1vLXNlY3JldA=="}  # demo:demo-secret, the simulator's default


@pytest.mark.parametrize(("extra", "code", "description"), [
    ({"scheduleDate": "tomorrow"}, 108, "No valid Datetime for send"),
    ({"scheduleDate": "20131302142000"}, 108, "No valid Datetime for send"),  # month 13
    ({"expirationDate": "2013-02-15"}, 119, "Invalid expiration date"),
    ({"tags": ["spring"]}, 126, "Empty campaign name"),
    ({"tags": ["spring"], "campaignName": " "}, 126, "Empty campaign name"),
    ({"trans": 2}, 422, "The trans field must be 0 or 1."),
])
def test_simulator_follows_the_seed_on_campaign_parameters(sim, extra, code, description):
    status, _, body = call(sim.url(KIND), "/api/rest/sms", {**SMS, **extra}, AUTH)
    assert status == (422 if code == 422 else 400)
    assert body == {"error": {"code": code, "description": description}}


def test_simulator_schedules_tags_and_transliterates(sim):
    status, _, body = call(sim.url(KIND), "/api/rest/sms", {**SMS, "scheduleDate": "20300215142000",
                                                            "tags": ["spring"], "campaignName": "c"}, AUTH)
    assert status == 202 and body["result"][0]["scheduledAt"] == "2030-02-15 14:20:00"
    text = "Atenção: promoção válida só até às 20h, não perca esta oportunidade única"  # UCS-2 as written
    status, _, body = call(sim.url(KIND), "/api/rest/sms", {**SMS, "message": text, "trans": 1}, AUTH)
    assert status == 202  # with trans = 1 the server makes it GSM-7 (one part), as the seed's table says
    assert sim.ledger(KIND)[-1]["text"] == "AtenÇao: promoÇao valida so até às 20h, nao perca esta oportunidade unica"
    status, _, body = call(sim.url(KIND), "/api/rest/sms", {**SMS, "message": text}, AUTH)
    assert (status, body["error"]["code"]) == (400, 113)  # trans = 0: not GSM-7, and gsm was declared


# -- email -----------------------------------------------------------------------------------------------

def test_personalised_email_shares_requests_through_sub(sim, tmp_path):
    code, by_id = send(tmp_path, sim.url(KIND), "email", emails(30))
    assert code == 0
    assert sim.stats(KIND)["requests"] == 3
    ledger = assert_ledger_matches(sim, by_id, "email")
    e = ledger["r4"]
    assert e["text"] == "<p>Hola NAME4, debes 4,50 EUR</p>"  # the server's substitution = our rendering
    assert (e["from"], e["fromName"], e["replyTo"], e["subject"]) == (
        "news@example.com", "ACME", "help@example.com", "Your invoice")
    assert all(r["parts"] is None and r["encoding"] is None for r in by_id.values())


def test_email_reply_to_defaults_to_the_sender(sim, tmp_path):
    code, _ = send(tmp_path, sim.url(KIND), "email", emails(2), message={"options": {}})
    assert code == 0
    assert {e["replyTo"] for e in sim.ledger(KIND)} == {"news@example.com"}
    assert {e["fromName"] for e in sim.ledger(KIND)} == {None}


def test_an_address_360nrs_refuses_is_rejected_alone(sim, tmp_path):
    rows = [*emails(4), {"id": "bad", "email": "x@y@example.com", "name": "x", "amount": "1"}]
    code, by_id = send(tmp_path, sim.url(KIND), "email", rows)
    assert code == 1
    bad = by_id["bad"]
    assert (bad["status"], bad["code"], bad["error"]) == ("rejected", "102", "No valid recipients")
    assert [r["status"] for k, r in sorted(by_id.items()) if k != "bad"] == ["sent"] * 4
    assert_ledger_matches(sim, by_id, "email")


def test_an_unverified_reply_to_fails_every_email(sim, tmp_path):
    message = {"options": {"reply_to": "help@elsewhere.test"}}
    code, by_id = send(tmp_path, sim.url(KIND), "email", emails(3), message=message)
    assert code == 1
    assert {(r["status"], r["code"], r["error"]) for r in by_id.values()} == {
        ("failed", "117", "ReplyTo is not verified")}
    assert sim.ledger(KIND) == []


def test_email_server_errors_are_retried_then_sent(sim, tmp_path):
    sim.config(KIND, error_rate=0.4)
    code, by_id = send(tmp_path, sim.url(KIND), "email", emails(40), provider={"batch_size": 2, "max_attempts": 15})
    assert code == 0
    assert sim.stats(KIND)["errors_injected"] > 0
    assert max(r["attempts"] for r in by_id.values()) > 1
    assert_ledger_matches(sim, by_id, "email")


def test_more_recipients_than_the_simulator_takes_fail_with_its_reason(sim, tmp_path):
    sim.config(KIND, max_batch=5)
    code, by_id = send(tmp_path, sim.url(KIND), "email", emails(8))
    assert code == 1
    assert {(r["code"], r["error"]) for r in by_id.values()} == {("422", "At most 5 recipients per request")}


# -- WhatsApp ----------------------------------------------------------------------------------------------

def test_whatsapp_template_with_positional_fields(sim, tmp_path):
    code, by_id = send(tmp_path, sim.url(KIND), "whatsapp", phones(25))
    assert code == 0
    assert sim.stats(KIND)["requests"] == 3
    ledger = assert_ledger_matches(sim, by_id, "whatsapp")
    assert all(UUID.fullmatch(r["message_id"]) for r in by_id.values())
    e = ledger["r7"]
    assert (e["templateId"], e["from"], e["bodyFields"]) == (123, WA_SENDER, ["name7", "7.50"])
    assert all(r["parts"] is None for r in by_id.values())


def test_whatsapp_per_message_errors_name_the_index(sim, tmp_path):
    rows = phones(6)
    rows[3]["amount"] = " "  # present for us, an empty body field for 360nrs
    code, by_id = send(tmp_path, sim.url(KIND), "whatsapp", rows)
    assert code == 1
    bad = by_id["r4"]
    assert bad["status"] == "failed" and bad["code"] == "422"
    assert bad["error"] == "The messages.3.bodyFields items must not be empty."
    assert bad["trace_id"]
    assert sum(r["status"] == "sent" for r in by_id.values()) == 5
    assert_ledger_matches(sim, by_id, "whatsapp")


def test_whatsapp_unknown_template_fails_every_message(sim, tmp_path):
    code, by_id = send(tmp_path, sim.url(KIND), "whatsapp", phones(3),
                       message={"options": {"template_id": 999, "parameters": ["name"]}})
    assert code == 1
    assert {(r["status"], r["code"], r["error"]) for r in by_id.values()} == {("failed", "140", "Invalid template")}


def test_running_out_of_credit_halts_the_provider(sim, tmp_path):
    sim.config(KIND, credits=5)
    code, by_id = send(tmp_path, sim.url(KIND), "whatsapp", phones(20), provider={"batch_size": 5, "concurrency": 1})
    assert code == 3
    sent = [r for r in by_id.values() if r["status"] == "sent"]
    failed = [r for r in by_id.values() if r["status"] == "deferred"]
    assert len(sent) == 5 and {(r["code"], r["error"]) for r in failed} == {("111", "Not enough credits")}
    assert sim.stats(KIND)["requests"] == 2  # nothing retried, nothing more sent
    assert_ledger_matches(sim, by_id, "whatsapp")


# -- voice ----------------------------------------------------------------------------------------------------

def test_voice_messages_with_language_and_gender(sim, tmp_path):
    rows = phones(12)
    rows[5]["name"] = "x" * 520  # this recipient's text passes 500 characters
    code, by_id = send(tmp_path, sim.url(KIND), "voice", rows)
    assert code == 1
    long = by_id["r6"]
    assert long["status"] in ("failed", "rejected") and long["code"] in ("105", "too_long")
    ledger = assert_ledger_matches(sim, by_id, "voice")
    assert len(ledger) == 11
    e = ledger["r2"]
    assert (e["text"], e["language"], e["gender"]) == ("Hola name2, debes 2,50 euros", "es_ES", "F")


@pytest.mark.parametrize(("options", "code", "error"), [
    ({"language": "xx_XX", "gender": "F"}, "130", "Invalid voice language"),
    ({"language": "arb", "gender": "M"}, "131", "Invalid voice gender"),  # female only
    ({"gender": "F"}, "130", "Invalid voice language"),  # required: the server says so
])
def test_voice_settings_the_server_refuses(sim, tmp_path, options, code, error):
    status, by_id = send(tmp_path, sim.url(KIND), "voice", phones(2), message={"options": options})
    assert status == 1
    assert {(r["status"], r["code"], r["error"]) for r in by_id.values()} == {("failed", code, error)}


def test_voice_429_is_retried(sim, tmp_path):
    sim.config(KIND, rate=2)
    code, by_id = send(tmp_path, sim.url(KIND), "voice", phones(20),
                       provider={"batch_size": 4, "rate": 20, "max_attempts": 20})
    assert code == 0
    stats = sim.stats(KIND)
    assert stats["rate_limited"] > 0 and stats["max_window"] <= 2
    assert_ledger_matches(sim, by_id, "voice")


# -- event notifications ----------------------------------------------------------------------------------------

def test_event_notifications_reach_the_receiver_for_each_channel(sim, tmp_path):
    with Receiver() as rx:
        sim_options(sim, KIND, events_url=rx.url + "/360nrs/events")
        runs = {ch: send(tmp_path / ch, sim.url(KIND), ch, rows)[1]
                for ch, rows in (("email", emails(3)), ("voice", phones(3)), ("whatsapp", phones(3)))}
        got = rx.wait(9)
    assert len(got) == 9
    forms = {g["data"]["id"]: g["data"] for g in got}
    for ch, name in (("email", "mailing"), ("voice", "text2speech"), ("whatsapp", "whatsapp")):
        for r in runs[ch].values():
            f = forms[r["message_id"]]
            assert (f["channel"], f["event"]) == (name, "delivered")
            assert ("smtpResponse" in f) == (ch == "email")
    assert all(g["method"] == "POST" and g["path"] == "/360nrs/events" for g in got)


# -- build, parse, check --------------------------------------------------------------------------------------

@pytest.fixture
def adapter() -> Nrs360:
    return Nrs360("n", Nrs360Settings(url="http://nrs.test", username_env="NRS360_USER",
                                      password_env="NRS360_PASSWORD", campaign_name="spring"))


def msgs(channel: str, template: str, *recipients: str, sender: str = "", subject: str = "",
         **options: Any) -> list[Message]:
    tpl = compile_template(template)
    content = Content(channel, tpl, sender, subject, options)
    out = []
    for i, to in enumerate(recipients):
        values = {"name": f"n{i}", "amount": f"{i}", "code": f"c{i}"}
        text, slots = tpl.fill(values)
        out.append(Message(i, f"r{i}", to, text, values, slots, "n", channel, content=content))
    return out


def test_address_for_each_channel(adapter):
    assert {ch: adapter.address_for(ch) for ch in sorted(adapter.channels)} == {
        "email": "email", "sms": "phone", "voice": "phone", "whatsapp": "phone"}


def test_build_email(adapter):
    batch = msgs("email", "<b>Hi {name|upper}</b>", "a@example.com", "+b@example.com", sender="news@example.com",
                 subject="S", from_name="ACME", reply_to="r@example.com")
    req = adapter.build(batch)
    assert req.url == "http://nrs.test/api/rest/mailing"
    assert orjson.loads(req.body) == {"to": ["a@example.com", "+b@example.com"], "fromEmail": "news@example.com",
                                      "replyTo": "r@example.com", "subject": "S", "fromName": "ACME",
                                      "body": "<b>Hi {name_upper}</b>",
                                      "sub": [{"name_upper": "N0"}, {"name_upper": "N1"}], "campaignName": "spring"}


def test_a_campaign_batch_builds_the_bytes_its_messages_build(adapter):
    """A campaign's batch of slot values (no text or dict a recipient: the substitutions written from the
    value columns) builds byte for byte the request its messages build."""
    tpl = compile_template('Hola {name}, "{amount|formatDotComma}" \\ {name|upper}')
    content = Content("sms", tpl, "ACME")
    names, amounts = ['jo\u00e3o "x"', "b\\", "zo\u00eb,", "d"], ["1234.5", "2", "", "30000"]
    vals, _ = tpl.columns.slots({"name": names, "amount": amounts}.__getitem__, 4)
    cols = ([1, 2, 3, 4], ["a", "b", "c", "d"], ["+34600000001", "+34600000002", "+34600000003", "+34600000004"])
    batch = Batch(*cols, None, [{}] * 4, None, ["UCS-2"] * 4, [1] * 4, [False] * 4, "n", "sms", content, vals=vals)
    lazy = adapter.build(batch).body
    assert batch.fresh  # no message made
    assert lazy == adapter.build(batch.messages()).body
    assert orjson.loads(lazy)["sub"] == [tpl.fill({"name": a, "amount": b})[1] for a, b in zip(names, amounts, strict=True)]


def test_build_whatsapp(adapter):
    batch = msgs("whatsapp", "Hi {name|upper} {amount}", "+34600000001", "+34600000002", sender=WA_SENDER,
                 template_id=125, header_parameters=["code"])
    assert adapter.batch_key(batch[0]) == adapter.batch_key(batch[1])
    body = orjson.loads(adapter.build(batch).body)
    assert body == {"templateId": 125, "from": WA_SENDER, "campaignName": "spring", "messages": [
        {"to": "34600000001", "headerFields": ["c0"], "bodyFields": ["N0", "0"]},
        {"to": "34600000002", "headerFields": ["c1"], "bodyFields": ["N1", "1"]}]}


def test_build_voice(adapter):
    batch = msgs("voice", "Hola {name}", "+34600000001", language="es_ES", gender="M", retries=2, other="x")
    body = orjson.loads(adapter.build(batch).body)
    assert body == {"to": ["34600000001"], "language": "es_ES", "gender": "M", "retries": 2,
                    "message": "Hola {name}", "sub": [{"name": "n0"}], "campaignName": "spring"}


def test_check_voice_length_and_whatsapp_fields(adapter):
    [long] = msgs("voice", "x" * 501, "+34600000001")
    assert adapter.check(long)[0] == "too_long"
    [ok] = msgs("voice", "x" * 500, "+34600000001")
    assert adapter.check(ok) is None
    [wa] = msgs("whatsapp", "Hi", "+34600000001", template_id=1, parameters=["name", "missing"])
    assert adapter.check(wa) == ("missing_variable", "template field 'missing' has no value in this record")


def test_parse_whatsapp_multi_status(adapter):
    batch = msgs("whatsapp", "Hi", "+34600000001", "+34600000002")
    body = {"campaignId": 0, "sendingId": 100001, "result": [
        {"accepted": True, "to": "34600000001", "id": "8b4e5d35-dc16-4e2e-8a9c-c222db81f5ba"},
        {"accepted": False, "to": "34600000002",
         "error": {"code": 102, "description": "The messages.1.to field does not contain a valid phone number"}}]}
    a, b = adapter.parse(batch, 207, {}, orjson.dumps(body))
    assert (a.verdict, a.message_id, a.trace_id) == (Verdict.SENT, "8b4e5d35-dc16-4e2e-8a9c-c222db81f5ba", "100001")
    assert (b.verdict, b.code, b.error) == (Verdict.REJECTED, "102",
                                            "The messages.1.to field does not contain a valid phone number")
    [o] = adapter.parse(batch[:1], 400, {}, b'{"error":{"code":140,"description":"Invalid template"}}')
    assert (o.verdict, o.code) == (Verdict.FAILED, "140")


def sent(outcomes) -> list[tuple]:
    """(verdict, message id, trace id) a recipient, whether parse answered Accepted or outcomes."""
    if isinstance(outcomes, Accepted):
        return [(Verdict.SENT, i, outcomes.trace_id) for i in outcomes.message_ids]
    return [(o.verdict, o.message_id, o.trace_id) for o in outcomes]


@pytest.mark.parametrize(("entries", "sending", "expected"), [
    ([{"accepted": True, "to": "1", "id": "a", "parts": 1}, {"accepted": True, "id": "b"}], 7,
     [(Verdict.SENT, "a", "7"), (Verdict.SENT, "b", "7")]),
    ([{"accepted": True, "id": 11}, {"accepted": True, "id": None}], "s-1",
     [(Verdict.SENT, 11, "s-1"), (Verdict.SENT, None, "s-1")]),
    ([{"accepted": True, "id": "a"}, {"accepted": True}], None,  # no id: read one by one, still sent
     [(Verdict.SENT, "a", None), (Verdict.SENT, None, None)]),
    ([{"accepted": 1, "id": "a"}, {"accepted": True, "id": 2.5}], 3,  # loose types: as the generic reading
     [(Verdict.SENT, "a", "3"), (Verdict.SENT, 2.5, "3")]),
    ([{"accepted": True, "id": "a"}, {"accepted": False, "error": {"code": 102, "description": "bad"}}], 3,
     [(Verdict.SENT, "a", "3"), (Verdict.REJECTED, None, "3")]),
])
def test_parse_reads_every_shape_of_an_accepted_answer(adapter, entries, sending, expected):
    """The typed reading of the common answer (every recipient accepted) and the generic one agree: an
    answer the typed one cannot take (loose types, a missing id, a refusal) is read generically."""
    batch = msgs("sms", "Hi", "+34600000001", "+34600000002")
    body = {"campaignId": 0, "result": entries, **({} if sending is None else {"sendingId": sending})}
    assert sent(adapter.parse(batch, 202, {}, orjson.dumps(body))) == expected


@pytest.mark.parametrize("rate", [0, 50])
def test_requests_are_as_full_as_batch_size_allows(sim, tmp_path, rate):
    """100,000 recipients, 1,000 a request, read in chunks of 2,048, every other name outside GSM 03.38 (so
    two open groups, GSM-7 and UCS-2): ceil(n / 1000) requests of each encoding, at the simulator's own
    limit too. A chunk's end, or the in-flight limit while requests are still on the wire, never cuts a
    request short; only the end of the source does."""
    n = 100_000
    rows = [{**r, "name": r["name"] + ("ö" if i % 2 else "")} for i, r in enumerate(phones(n))]
    code, by_id = send(tmp_path, sim.url(KIND), "sms", rows, provider={"batch_size": 1000, "rate": rate})
    assert code == 0 and sum(r["status"] == "sent" for r in by_id.values()) == n
    sizes = Counter(e["sending"] for e in sim.ledger(KIND)).values()
    assert len(sizes) == 2 * -(-(n // 2) // 1000), sorted(sizes)
