"""Sendix (WhatsApp) end to end against its simulator, plus parse() on crafted answers.

The helpers above the tests (campaign writer, HTTP call, delivery-report receiver) are
generic and also used by the SendX and 360nrs provider tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from blastkit import Receiver, blast, call, people, sim_options

from dispatcher.model import Content, Message
from dispatcher.providers.base import Verdict
from dispatcher.providers.sendix import Sendix, SendixSettings
from dispatcher.render import compile_template

KIND = "sendix"


# -- helpers ----------------------------------------------------------------------------------------
def whatsapp(tmp: Path, url: str, rows: list[dict[str, str]], *, provider: dict[str, Any] | None = None,
             message: dict[str, Any] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    p = {"type": KIND, "url": url, "username_env": "SENDIX_USER", "password_env": "SENDIX_PASSWORD", **(provider or {})}
    m = {"channel": "whatsapp", "template": "Hola {name}, {amount}",
         "options": {"template_name": "promo", "language": "es", "parameters": ["name", "amount"]}, **(message or {})}
    return blast(tmp, rows, p, m)


def assert_ledger_matches(sim, by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One ledger entry per `sent` result, same message id, same number, same record id, same trace id."""
    ledger = sim.ledger(KIND)
    sent = {r["message_id"]: r for r in by_id.values() if r["status"] == "sent"}
    assert len(ledger) == len(sent)
    assert {e["id"] for e in ledger} == set(sent)
    for e in ledger:
        r = sent[e["id"]]
        assert "+" + e["phone"] == r["to"]
        assert e["externalId"] == r["id"]
        assert e["traceId"] == r["trace_id"]
    return ledger


# -- end to end ---------------------------------------------------------------------------------------

def test_every_record_is_sent_once_with_its_trace_id(sim, tmp_path):
    rows = people(40)
    code, by_id = whatsapp(tmp_path, sim.url(KIND), rows)
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    ledger = assert_ledger_matches(sim, by_id)
    by_ext = {e["externalId"]: e for e in ledger}
    assert by_ext["r7"]["parameters"] == ["name7", "7.50"]
    assert by_ext["r7"]["templateName"] == "promo" and by_ext["r7"]["language"] == "es"
    traces = [r["trace_id"] for r in by_id.values()]
    assert all(t and t.isdigit() for t in traces) and len(set(traces)) == len(traces)
    assert all(r["channel"] == "whatsapp" and r["attempts"] == 1 for r in by_id.values())
    assert sim.stats(KIND)["tokens"] == 1


def test_template_placeholders_are_the_parameters_without_a_parameters_option(sim, tmp_path):
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(3),
                        message={"template": "Hola {name|upper}, debes {amount|formatDotComma}",
                                 "options": {"template_name": "promo"}})
    assert code == 0
    ledger = assert_ledger_matches(sim, by_id)
    assert sorted(e["parameters"] for e in ledger)[0] == ["NAME1", "1,50"]
    assert all("language" not in e or e["language"] is None for e in ledger)


def test_validation_errors_reject_the_recipient_or_fail_the_message(sim, tmp_path):
    rows = people(5)
    rows[2]["amount"] = "  "  # present for the dispatcher, an empty template parameter for Sendix
    code, by_id = whatsapp(tmp_path, sim.url(KIND), rows)
    assert code == 1
    bad = by_id["r3"]
    assert bad["status"] == "rejected" and bad["code"] == "1000"
    assert bad["error"] == "parameters: template parameters must not be empty"
    assert bad["trace_id"]
    assert [r["status"] for k, r in sorted(by_id.items()) if k != "r3"] == ["sent"] * 4
    assert_ledger_matches(sim, by_id)


def test_an_unknown_template_fails_every_message_with_the_reason(sim, tmp_path):
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(3),
                        message={"options": {"template_name": "nope", "parameters": ["name"]}})
    assert code == 1
    for r in by_id.values():  # a campaign-level field: final, but not the recipient's fault
        assert r["status"] == "failed" and r["code"] == "1000"
        assert r["error"] == "templateName: template 'nope' not found" and r["trace_id"]
    assert sim.ledger(KIND) == []


def test_bad_credentials_stop_the_provider_before_any_message(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("SENDIX_PASSWORD", "wrong-secret")
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(20))
    assert code == 3  # deferred: a resume with the right credentials sends them
    for r in by_id.values():
        assert r["status"] == "deferred" and r["code"] == "auth"
        assert r["error"] == "authentication failed: HTTP 401"
    assert "wrong-secret" not in (tmp_path / "out" / "x.jsonl").read_text()
    assert sim.ledger(KIND) == []
    assert sim.stats(KIND)["requests"] == 1  # the token call only


def test_api_user_without_permission_halts_the_provider(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("SENDIX_USER", "viewer")
    monkeypatch.setenv("SENDIX_PASSWORD", "viewer-secret")
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(30), provider={"concurrency": 2})
    assert code == 3
    for r in by_id.values():
        assert r["status"] == "deferred" and r["code"] == "403"
        assert "permission" in r["error"]
    assert sim.ledger(KIND) == []
    assert sim.stats(KIND)["requests"] <= 1 + 2  # the token, then what was in flight when the first 403 came


def test_an_expired_token_is_refreshed_without_counting_an_attempt(sim, tmp_path):
    sim_options(sim, KIND, token_ttl=0.3)
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(40), provider={"rate": 20, "concurrency": 4})
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    assert all(r["attempts"] == 1 for r in by_id.values())
    assert_ledger_matches(sim, by_id)
    stats = sim.stats(KIND)
    assert stats["tokens"] >= 4 and stats["unauthorized"] > 0


def test_401_again_right_after_refreshing_is_final(sim, tmp_path):
    sim_options(sim, KIND, token_ttl=0)  # every token is dead on arrival
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(3), provider={"concurrency": 1})
    assert code == 1
    for r in by_id.values():
        assert r["status"] == "failed" and r["code"] == "401"
        assert r["error"] == "No valid token provided" and r["trace_id"]
    assert sim.ledger(KIND) == []
    assert sim.stats(KIND)["tokens"] <= 1 + 2 * 3  # the engine refreshes at most twice per message


def test_429_is_retried_after_retry_after(sim, tmp_path):
    sim.config(KIND, rate=5)
    t0 = time.monotonic()
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(15), provider={"rate": 50, "max_attempts": 30})
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    assert_ledger_matches(sim, by_id)
    stats = sim.stats(KIND)
    assert stats["rate_limited"] > 0 and stats["max_window"] <= 5
    assert max(r["attempts"] for r in by_id.values()) > 1
    assert time.monotonic() - t0 >= 2.0  # 16 admitted requests at 5 a second


def test_server_errors_are_retried_then_sent(sim, tmp_path):
    sim.config(KIND, error_rate=0.3)
    code, by_id = whatsapp(tmp_path, sim.url(KIND), people(30), provider={"max_attempts": 12})
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}
    assert_ledger_matches(sim, by_id)
    assert sim.stats(KIND)["errors_injected"] > 0
    assert max(r["attempts"] for r in by_id.values()) > 1


def test_no_one_second_window_exceeds_100_requests(sim, tmp_path):
    code, _ = whatsapp(tmp_path, sim.url(KIND), people(250))
    assert code == 0
    stats = sim.stats(KIND)
    assert stats["rate_limited"] == 0 and stats["max_window"] <= 100
    assert len(sim.ledger(KIND)) == 250


def test_webhook_delivery_reports_reach_the_receiver(sim, tmp_path):
    rows = [*people(9), {"id": "r0", "phone": "+34610000000", "name": "nobody", "amount": "1"}]
    with Receiver() as rx:
        sim_options(sim, KIND, webhook_url=rx.url + "/sendix/events")
        code, by_id = whatsapp(tmp_path, sim.url(KIND), rows)
        got = rx.wait(len(rows))
    assert code == 0
    assert len(got) == len(rows)
    events = {g["data"]["messageId"]: g["data"] for g in got}
    assert all(g["method"] == "POST" and g["path"] == "/sendix/events" for g in got)
    assert set(events) == {r["message_id"] for r in by_id.values()}
    for r in by_id.values():
        e = events[r["message_id"]]
        assert e["externalId"] == r["id"] and "+" + e["phone"] == r["to"]
        assert e["status"] == ("Failed" if r["id"] == "r0" else "Delivered")
    assert events[by_id["r0"]["message_id"]]["errorCode"] == "131026"
    assert sim.stats(KIND)["dlr_sent"] == len(rows)


# -- the simulator on its own ------------------------------------------------------------------------

def token(url: str, user: str = "demo", password: str = "demo-secret") -> str:
    status, _, body = call(url, "/api/v1/auth/token", {"username": user, "password": password})
    assert status == 200 and body["expiresIn"] == 3600
    return body["token"]


def test_simulator_answers_in_the_documented_shapes(sim):
    url = sim.url(KIND)
    status, headers, body = call(url, "/api/v1/messages", {"phone": "34612345678", "templateName": "promo"})
    assert status == 401 and headers["TraceId"] == body["TraceId"]
    assert body == {"Type": "Unauthorized", "Title": "No valid token provided", "Status": 1001,
                    "TraceId": body["TraceId"]}
    auth = {"Authorization": "Bearer " + token(url)}
    status, headers, body = call(url, "/api/v1/messages", {"phone": "+34612345678", "templateName": "promo",
                                                          "parameters": ["a"], "language": 5}, auth)
    assert status == 400 and body["Type"] == "ValidationError" and body["Status"] == 1000
    assert body["Title"] == "One or more validation errors occurred."
    assert set(body["Errors"]) == {"phone", "parameters", "language"}
    status, headers, body = call(url, "/api/v1/messages", {"phone": "34612345678", "templateName": "welcome",
                                                          "parameters": ["Ana"]}, auth)
    assert status == 200 and body["status"] == "Queued" and headers["TraceId"].isdigit()
    status, _, found = call(url, f"/api/v1/messages/{body['messageId']}", headers=auth)
    assert status == 200 and found["status"] == "Delivered" and found["phone"] == "34612345678"
    status, headers, _ = call(url, "/api/v1/nowhere", headers=auth)
    assert status == 404 and "TraceId" in headers
    viewer = {"Authorization": "Bearer " + token(url, "viewer", "viewer-secret")}
    status, _, body = call(url, "/api/v1/messages", {"phone": "34612345678", "templateName": "reminder"}, viewer)
    assert status == 403 and body["Status"] == 1003


def test_simulator_group_and_campaign_flow(sim):
    url = sim.url(KIND)
    auth = {"Authorization": "Bearer " + token(url)}
    status, _, body = call(url, "/api/v1/campaigns", {"name": "c", "groupId": "dfdaebb7-112c-dccf-0234-c9dd6d0ca2cf",
                                                      "templateName": "reminder"}, auth)
    assert status == 400 and body["Errors"] == {
        "groupId": ["group ID dfdaebb7-112c-dccf-0234-c9dd6d0ca2cf not found"]}  # the documented example
    _, _, group = call(url, "/api/v1/groups", {"name": "clients"}, auth)
    contacts = [{"phone": "34612345678"}, {"phone": "34612345679", "firstName": "Ana"}, {"phone": "+34"}]
    _, _, added = call(url, f"/api/v1/groups/{group['groupId']}/contacts", {"contacts": contacts}, auth)
    assert added["added"] == 2 and added["rejected"] == [{"phone": "+34", "reason": "invalid phone number"}]
    _, _, listed = call(url, "/api/v1/groups", headers=auth)
    assert listed["items"] == [{"groupId": group["groupId"], "name": "clients", "contactsCount": 2}]
    status, _, started = call(url, "/api/v1/campaigns", {"name": "c", "groupId": group["groupId"],
                                                         "templateName": "welcome", "parameters": ["hi"]}, auth)
    assert status == 200 and started["status"] == "Sending"
    _, _, report = call(url, f"/api/v1/campaigns/{started['campaignId']}", headers=auth)
    assert report["total"] == 2 and report["sent"] == 2 and report["status"] == "Completed"
    ledger = sim.ledger(KIND)
    assert sorted(e["phone"] for e in ledger) == ["34612345678", "34612345679"]
    assert {e["campaignId"] for e in ledger} == {started["campaignId"]}


def test_the_token_call_counts_against_the_rate(sim):
    sim.config(KIND, rate=3)
    url = sim.url(KIND)
    auth = {"Authorization": "Bearer " + token(url)}
    codes = [call(url, "/api/v1/messages", {"phone": "34612345678", "templateName": "reminder"}, auth)[0]
             for _ in range(3)]
    assert codes == [200, 200, 429]
    status, headers, body = call(url, "/api/v1/messages", {"phone": "34612345678", "templateName": "reminder"}, auth)
    assert status == 429 and headers["Retry-After"] == "1" and body["Status"] == 1029


# -- parse() and build() on crafted answers ---------------------------------------------------------------

@pytest.fixture
def adapter() -> Sendix:
    return Sendix("wa", SendixSettings(url="http://sendix.test/", username_env="SENDIX_USER",
                                       password_env="SENDIX_PASSWORD"))


def message(**options: Any) -> Message:
    content = Content("whatsapp", compile_template("Hi {name}"), options=options)
    return Message(1, "rec-1", "+34612345678", "Hi Ana", {"name": "Ana", "amount": "3"}, {"name": "Ana"},
                   "wa", "whatsapp", content=content)


def problem(status_code: int, errors: dict[str, list[str]] | None = None, title: str = "t") -> bytes:
    body: dict[str, Any] = {"Type": "ValidationError", "Title": title, "Status": status_code, "TraceId": "77"}
    if errors is not None:
        body["Errors"] = errors
    return orjson.dumps(body)


def test_build_sends_one_message_with_the_proposed_fields(adapter):
    req = adapter.build([message(template_name="promo", language="es", parameters=["name", "amount"])])
    assert req.method == "POST" and req.url == "http://sendix.test/api/v1/messages"
    assert orjson.loads(req.body) == {"phone": "34612345678", "templateName": "promo", "language": "es",
                                      "parameters": ["Ana", "3"], "externalId": "rec-1"}
    assert adapter.address_for("whatsapp") == "phone"


@pytest.mark.parametrize(("errors", "verdict", "text"), [
    ({"Phone": ["bad number"]}, Verdict.REJECTED, "Phone: bad number"),
    ({"PARAMETERS[1]": ["empty"], "$.externalId": ["too long"]}, Verdict.REJECTED,
     "PARAMETERS[1]: empty; $.externalId: too long"),
    ({"templateName": ["template 'x' not found"]}, Verdict.FAILED, "templateName: template 'x' not found"),
    ({"phone": ["bad"], "Language": ["nope", "still nope"]}, Verdict.FAILED,
     "phone: bad; Language: nope; Language: still nope"),
])
def test_validation_errors_are_read_case_insensitively(adapter, errors, verdict, text):
    [o] = adapter.parse([message()], 400, {}, problem(1000, errors))
    assert o.verdict == verdict and o.code == "1000" and o.error == text and o.trace_id == "77"


@pytest.mark.parametrize(("status", "headers", "verdict", "code", "retry_after"), [
    (401, {"TraceId": "9"}, Verdict.REAUTH, "401", None),
    (403, {"TraceId": "9"}, Verdict.HALT, "403", None),
    (429, {"TraceId": "9", "Retry-After": "2"}, Verdict.RETRY, "429", 2.0),
    (503, {"TraceId": "9"}, Verdict.RETRY, "503", None),
    (400, {"TraceId": "9"}, Verdict.FAILED, "400", None),  # a 400 without Errors
])
def test_status_classes(adapter, status, headers, verdict, code, retry_after):
    body = problem(1029, title="why")
    [o] = adapter.parse([message()], status, headers, body)
    assert (o.verdict, o.code, o.retry_after, o.trace_id) == (verdict, code, retry_after, "9")
    assert o.error == "why"


def test_success_and_odd_answers(adapter):
    [o] = adapter.parse([message()], 200, {"TraceId": "123"}, b'{"messageId":"m-1","status":"Queued"}')
    assert (o.verdict, o.message_id, o.trace_id) == (Verdict.SENT, "m-1", "123")
    [o] = adapter.parse([message()], 200, {"TraceId": "124"}, b"{}")
    assert o.verdict == Verdict.FAILED and o.code == "bad_answer"
    [o] = adapter.parse([message()], 502, {}, b"<html>bad gateway</html>")
    assert o.verdict == Verdict.RETRY and o.code == "502" and o.trace_id is None


# -- the inferred contract, replaced from the config file --------------------------------------------

OTHER_CONTRACT = {"token_path": "/oauth/token", "send_path": "/v2/whatsapp/send", "username": "user",
                  "password": "secret", "token": "data.access", "auth_header": "X-Auth", "auth_scheme": "Token",
                  "phone": "msisdn", "template": "template", "language": "lang", "parameters": "vars",
                  "external_id": "ref", "message_id": "result.id"}


class OtherSendix(Receiver):
    """A Sendix that speaks another contract than the proposed one: its own paths, field names,
    token answer and success shape. It records every request and answers only what it expects."""

    async def _handle(self, request: web.Request) -> web.Response:
        await super()._handle(request)
        got = self.got[-1]
        if request.path == "/oauth/token" and got["data"] == {"user": "demo", "secret": "demo-secret"}:
            return json_answer({"data": {"access": "tok-1"}})
        body = got["data"] or {}
        if (request.path == "/v2/whatsapp/send" and request.headers.get("X-Auth") == "Token tok-1"
                and set(body) == {"msisdn", "template", "lang", "vars", "ref"}):
            return json_answer({"result": {"id": "id-" + body["ref"]}}, headers={"TraceId": "t-" + body["ref"]})
        return json_answer({"Title": "not this contract"}, status=404)


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def test_the_contract_comes_from_the_config_file(tmp_path):
    with OtherSendix() as server:
        code, by_id = whatsapp(tmp_path, server.url, people(3), provider={"api": OTHER_CONTRACT})
        assert code == 0, by_id
        assert {r["id"]: (r["status"], r["message_id"], r["trace_id"]) for r in by_id.values()} == {
            f"r{i}": ("sent", f"id-r{i}", f"t-r{i}") for i in (1, 2, 3)}
        token, *sends = server.got
        assert (token["path"], token["data"]) == ("/oauth/token", {"user": "demo", "secret": "demo-secret"})
        assert sorted((s["path"], s["data"]["msisdn"], s["data"]["vars"][0]) for s in sends) == [
            ("/v2/whatsapp/send", f"3461{i:07d}", f"name{i}") for i in (1, 2, 3)]
        assert {s["data"]["template"] for s in sends} == {"promo"} and {s["data"]["lang"] for s in sends} == {"es"}


def test_the_default_contract_fails_against_another_one(tmp_path):
    """The proof above is not vacuous: without the `api` table the same server refuses the run."""
    with OtherSendix() as server:
        code, by_id = whatsapp(tmp_path, server.url, people(2))
        assert code != 0 and {r["status"] for r in by_id.values()} != {"sent"}
        assert [g["path"] for g in server.got] == ["/api/v1/auth/token"]


@pytest.mark.parametrize(("api", "needle"), [
    ({"send_pth": "/x"}, "providers.p.api.send_pth: unknown name; known: "),
    ({"send_path": "v2/send"}, "providers.p.api.send_path: a path must start with '/'"),
    ({"phone": 3}, "providers.p.api.phone: must be a non-empty string, not 3"),
])
def test_a_wrong_contract_override_is_a_clear_config_error(tmp_path, capsys, api, needle):
    with pytest.raises(AssertionError):  # the run never starts: no result file
        whatsapp(tmp_path, "http://127.0.0.1:9", people(1), provider={"api": api})
    err = capsys.readouterr().err
    assert needle in err and "campaign.toml" in err
