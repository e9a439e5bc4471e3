"""Seed conformance: the providers' own examples (../shared/seeds/) sent to the simulators.

Every example request in the seeds for an endpoint the project uses is sent as written (only
credentials, tokens and account settings are the simulator's), and the answer is compared
with the seed's documented answer: the HTTP status, the field names and the shape (types,
nesting), and the values the seed fixes. Each test quotes the seed lines it checks, by file
and line. Where a seed example and the simulator disagree on purpose, the reason is in
dispatcher/providers/CONFORMANCE.md; the seeds are not in this repository, so they are
quoted here rather than read.

The SendX seed has no example request (its error shape is checked with the official SDK in
test_conformance_sendx.py); Kaleyra's and Sendix's have no request or response bodies, only
their code tables, which are checked here.
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from typing import Any

import orjson
import pytest
from blastkit import call, sim_options

from tests.conftest import CREDENTIALS

NRS = "nrs360"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"demo:demo-secret").decode()}


def shape(v: Any) -> Any:
    """The JSON value with every scalar replaced by its type: what "the same shape" means here."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    return type(v).__name__


# -- 360nrs (nrs360-multichannel-api.txt) ------------------------------------------------------------

# L16-22: curl -X POST '{{DASHBOARD_HOST}}/api/rest/sms' -d '{"to": ["34666555444"], "from": "TEST",
#         "message": "SMS text message"}'
SMS = {"to": ["34666555444"], "from": "TEST", "message": "SMS text message"}
# L128-142: HTTP Response Code 202 (ACCEPTED)
SMS_202 = {"campaignId": 100000, "sendingId": 100001, "result": [
    {"accepted": True, "to": "34666555444", "id": "XXXXXXXXXXXXX", "parts": 1, "scheduledAt": None, "expiresAt": None}]}
# L144-165: HTTP Response Code 207 (MULTI-STATUS)
SMS_207 = {"campaignId": 100000, "sendingId": 100001, "result": [
    {"accepted": True, "to": "34666555444", "id": "XXXXXXXXXXXXX", "parts": 1, "scheduledAt": None, "expiresAt": None},
    {"accepted": False, "to": "34", "error": {"code": 102, "description": "No valid recipients"}}]}
# L167-172: Error response (HTTP 400)
ERROR_102 = {"error": {"code": 102, "description": "No valid recipients"}}


def nrs(sim, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, answer = call(sim.url(NRS), path, body, AUTH if headers is None else headers)
    return status, answer


def test_nrs360_sms_example_is_accepted(sim):
    status, body = nrs(sim, "/api/rest/sms", SMS)
    assert status == 202 and shape(body) == shape(SMS_202)
    r = body["result"][0]
    assert (r["accepted"], r["to"], r["parts"]) == (True, "34666555444", 1)


def test_nrs360_sms_multi_status_example(sim):
    status, body = nrs(sim, "/api/rest/sms", {**SMS, "to": ["34666555444", "34"]})
    assert status == 207 and shape(body) == shape(SMS_207)
    assert body["result"][1] == SMS_207["result"][1]


def test_nrs360_sms_error_example(sim):
    assert nrs(sim, "/api/rest/sms", {**SMS, "to": ["34"]}) == (400, ERROR_102)


def test_nrs360_substitution_example(sim):
    """L284-296: "When using the sub parameter, the array must contain as many items as the send
    recipients": {"from": "TEST", "to": ["34666555444", "34666555333"], "message": "Hello {name}",
    "sub": [{"name": "first contact name"}, {"name": "second contact name"}]}."""
    body = {"from": "TEST", "to": ["34666555444", "34666555333"], "message": "Hello {name}",
            "sub": [{"name": "first contact name"}, {"name": "second contact name"}]}
    status, answer = nrs(sim, "/api/rest/sms", body)
    assert status == 202 and [r["to"] for r in answer["result"]] == body["to"]
    assert [e["text"] for e in sim.ledger(NRS)] == ["Hello first contact name", "Hello second contact name"]


def test_nrs360_multiple_notification_urls_example(sim):
    """L297-310: "notificationUrl": ["https://example.com/first-notification-url",
    "https://example.com/second-notification-url"], one per recipient."""
    body = {"from": "TEST", "to": ["34666555444", "34666555333"], "message": "SMS text message",
            "notificationUrl": ["https://example.com/first-notification-url",
                                "https://example.com/second-notification-url"]}
    sim.config(NRS, dlr_delay_ms=60_000)  # the example's URLs are not ours: keep the reports queued
    status, answer = nrs(sim, "/api/rest/sms", body)
    assert status == 202 and shape(answer) == shape({**SMS_202, "result": SMS_202["result"] * 2})


@pytest.mark.parametrize(("placeholder", "value", "expected"), [
    ("{name|lower}", "My Name", "my name"),  # L316-320: lower | Return lowercase text. | {name|lower} | my name
    ("{name|upper}", "my name", "MY NAME"),  # L321-325: {name|upper} | MY NAME
    ("{name|capitalize}", "my name", "My name"),  # L326-330: {name|capitalize} | My name
    ("{name|capitalizeAll}", "my name", "My Name"),  # L331-335: {name|capitalizeAll} | My Name
    ("{number|formatDotComma}", "1234.56", "1.234,56"),  # L336-342: {number|formatDotComma} | 1.234,56
    ("{number|formatCommaDot}", "1234.56", "1,234.56"),  # L343-348: {number|formatCommaDot} | 1,234.56
])
def test_nrs360_filter_examples(sim, placeholder, value, expected):
    key = placeholder[1:].split("|")[0]
    status, _ = nrs(sim, "/api/rest/sms", {**SMS, "message": placeholder, "sub": [{key: value}]})
    assert status == 202 and sim.ledger(NRS)[0]["text"] == expected


def test_nrs360_shorten_example(sim):
    """L349-353: shorten | Returns a shortened url. It must be a valid url. | {url|shorten} |
    https://sms.tl/xxxxxx"""
    long = "https://example.com/" + "a" * 200
    status, body = nrs(sim, "/api/rest/sms", {**SMS, "message": "{url|shorten}", "sub": [{"url": long}]})
    assert status == 202 and body["result"][0]["parts"] == 1  # counted shortened: the long link needs 2
    text = sim.ledger(NRS)[0]["text"]
    assert text.startswith("https://sms.tl/") and len(text) == len("https://sms.tl/xxxxxx")


# L552-562: curl -X POST '{{DASHBOARD_HOST}}/api/rest/mailing' -d '{"to": ["test@example.com"], "fromName":
#   "Info", "fromEmail": "info@sample.com", "body": "<html>...</html>", "replyTo": "replyto@example.com",
#   "subject": "TEST"}'
MAILING = {"to": ["test@example.com"], "fromName": "Info", "fromEmail": "info@sample.com",
           "body": '<html><head><title>TEST</title></head><body><a href="https://example.com">link</a></body></html>',
           "replyTo": "replyto@example.com", "subject": "TEST"}
# L670-683: 202; L684-704: 207 with {"accepted": false, "to": "invalidEmail", "error": {"code": 102, ...}}
MAILING_202 = {"campaignId": 100000, "sendingId": 100001, "result": [
    {"accepted": True, "to": "test@example.com", "id": "XXXXXXXXXXXXX", "scheduledAt": None}]}
MAILING_207_REFUSED = {"accepted": False, "to": "invalidEmail", "error": {"code": 102, "description": "No valid recipients"}}


def test_nrs360_mailing_examples(sim):
    sim_options(sim, NRS, verified_domains="sample.com,example.com")  # the example's account
    status, body = nrs(sim, "/api/rest/mailing", MAILING)
    assert status == 202 and shape(body) == shape(MAILING_202)
    status, body = nrs(sim, "/api/rest/mailing", {**MAILING, "to": ["test@example.com", "invalidEmail"]})
    assert status == 207 and body["result"][1] == MAILING_207_REFUSED
    assert shape(body["result"][0]) == shape(MAILING_202["result"][0])
    assert nrs(sim, "/api/rest/mailing", {**MAILING, "to": ["invalidEmail"]}) == (400, ERROR_102)  # L705-711


# L845-853: curl -X POST '{{DASHBOARD_HOST}}/api/rest/voice' -d '{"to": ["34666666666"], "message":
#   "Esto es un test de mensaje de voz", "gender": "F", "language": "es_ES"}'
VOICE = {"to": ["34666666666"], "message": "Esto es un test de mensaje de voz", "gender": "F", "language": "es_ES"}
# L959-973: 202
VOICE_202 = {"campaignId": 100000, "sendingId": 100001, "result": [
    {"accepted": True, "to": "34666666666", "id": "XXXXXXXXXXXXX", "scheduledAt": None, "expiresAt": None}]}


def test_nrs360_voice_examples(sim):
    status, body = nrs(sim, "/api/rest/voice", VOICE)
    assert status == 202 and shape(body) == shape(VOICE_202)
    status, body = nrs(sim, "/api/rest/voice", {**VOICE, "to": ["34666666666", "34"]})  # L974-995: 207
    assert status == 207 and body["result"][1] == {**ERROR_102, "accepted": False, "to": "34"}
    assert nrs(sim, "/api/rest/voice", {**VOICE, "to": ["34"]}) == (400, ERROR_102)  # L996-1002


# L1562-1572: curl -X POST '{{DASHBOARD_HOST}}/api/rest/whatsapp' -d '{"templateId": 123, "from":
#   "34666777555", "messages": [{"to": "34666555444"}]}'
WHATSAPP = {"templateId": 123, "from": "34666777555", "messages": [{"to": "34666555444"}]}
# L1682-1694: 202, ids are UUIDs ("04c80b02-8c0c-4884-bab8-89d6bc1fe406")
WHATSAPP_202 = {"campaignId": 100000, "sendingId": 100001, "result": [
    {"accepted": True, "to": "34666555444", "id": "04c80b02-8c0c-4884-bab8-89d6bc1fe406"}]}


def test_nrs360_whatsapp_examples(sim):
    sim_options(sim, NRS, whatsapp_templates="123:0:0")  # the example's template has no variables
    status, body = nrs(sim, "/api/rest/whatsapp", WHATSAPP)
    assert status == 202 and shape(body) == shape(WHATSAPP_202)
    assert len(body["result"][0]["id"]) == 36 and body["result"][0]["id"].count("-") == 4
    # L1695-1714: 207, {"accepted": false, "to": "34", "error": {"code": 102, "description":
    # "The messages.1.to field does not contain a valid phone number"}}
    status, body = nrs(sim, "/api/rest/whatsapp", {**WHATSAPP, "messages": [{"to": "34666555444"}, {"to": "34"}]})
    assert status == 207 and body["result"][1] == {"accepted": False, "to": "34", "error": {
        "code": 102, "description": "The messages.1.to field does not contain a valid phone number"}}
    # L1715-1720: Error response (HTTP 400) {"error": {"code": 140, "description": "Invalid template"}}
    assert nrs(sim, "/api/rest/whatsapp", {**WHATSAPP, "templateId": 999}) == (
        400, {"error": {"code": 140, "description": "Invalid template"}})


@pytest.mark.parametrize(("template", "message"), [
    # L1793-1810 "Sending template with variables and auto-answers."
    ("123:2:1", {"to": "34666555444", "headerFields": ["headerField1"], "bodyFields": ["bodyField1", "bodyField2"],
                 "callToActionFields": ["actionField1"], "defaultAnswer": "Example answer",
                 "buttonAnswers": ["first button answer", "second button answer"]}),
    # L1811-1826 "Sending template with location."
    ("123:0:0", {"to": "34666555444", "location": {"lat": "39.92516922986921", "long": "-0.10572674363232447",
                                                   "name": "NRS-Group", "address": "Carrer, Av. Arcadi Garcia Sanz, "
                                                   "19, 12540 Vila-real, Castelló"}}),
    # L1827-1837 "Sending template with authentication code."
    ("123:1:0", {"to": "34666555444", "bodyFields": ["auth_code"]}),
])
def test_nrs360_whatsapp_sending_examples(sim, template, message):
    sim_options(sim, NRS, whatsapp_templates=template)
    status, body = nrs(sim, "/api/rest/whatsapp", {"templateId": 123, "from": "34666777555", "messages": [message]})
    assert status == 202 and shape(body) == shape(WHATSAPP_202)


# L9435-9560, "Errors | Error Code | HTTP Code | Description": each code a send request can trigger.
SEED_ERRORS = {
    101: (500, "Internal Database error"), 102: (400, "No valid recipients"), 103: (401, "Username or password unknown"),
    104: (400, "Text message missing"), 105: (400, "Text message too long"), 106: (400, "Sender missing"),
    107: (400, "Sender too long"), 108: (400, "No valid Datetime for send"), 109: (400, "Notification URL incorrect"),
    110: (400, "Exceeded maximum parts allowed or incorrect number of parts"), 111: (402, "Not enough credits"),
    113: (400, "Invalid coding"), 114: (400, "Invalid subject"), 115: (400, "Sender is not verified"),
    116: (400, "Invalid replyTo"), 117: (400, "ReplyTo is not verified"), 119: (400, "Invalid expiration date"),
    125: (400, "Invalid JSON"), 126: (400, "Empty campaign name"), 130: (400, "Invalid voice language"),
    131: (400, "Invalid voice gender"), 132: (400, "Invalid voice caller"), 140: (400, "Template missing"),
}
MAIL = {**MAILING, "fromEmail": "info@example.com"}
ERROR_CASES = [
    (102, "/api/rest/sms", {**SMS, "to": ["34"]}),
    (103, "/api/rest/sms", SMS),  # sent with the wrong password
    (104, "/api/rest/sms", {**SMS, "message": ""}),
    (105, "/api/rest/sms", {**SMS, "message": "x" * 161}),  # L214: "If the number of parts is less ... error 105"
    (106, "/api/rest/sms", {**SMS, "from": ""}),
    (107, "/api/rest/sms", {**SMS, "from": "TOOLONGSENDER"}),  # L191: "15 numbers or 11 alphanumeric characters"
    (108, "/api/rest/sms", {**SMS, "scheduleDate": "tomorrow"}),  # L203: "in the following format YYYYmmddHHiiss"
    (109, "/api/rest/sms", {**SMS, "notificationUrl": "not a url"}),
    (110, "/api/rest/sms", {**SMS, "parts": 16}),  # L214: "The maximum number of parts allowed is 15"
    (113, "/api/rest/sms", {**SMS, "encoding": "latin-1"}),  # L195: "Possible values are 'gsm', 'gsm-pt' and 'utf-16'"
    (119, "/api/rest/sms", {**SMS, "expirationDate": "2013-02-15"}),
    (126, "/api/rest/sms", {**SMS, "tags": ["spring"]}),  # L231: "campaignName is required if this parameter is specified"
    (104, "/api/rest/mailing", {**MAIL, "body": ""}),
    (106, "/api/rest/mailing", {**MAIL, "fromEmail": ""}),
    (114, "/api/rest/mailing", {**MAIL, "subject": ""}),
    (115, "/api/rest/mailing", {**MAIL, "fromEmail": "info@unverified.test"}),
    (116, "/api/rest/mailing", {**MAIL, "replyTo": "not an address"}),
    (117, "/api/rest/mailing", {**MAIL, "replyTo": "reply@unverified.test"}),
    (140, "/api/rest/mailing", {**MAIL, "body": None, "templateId": 999}),
    (104, "/api/rest/voice", {**VOICE, "message": ""}),
    (130, "/api/rest/voice", {**VOICE, "language": "xx_XX"}),
    (131, "/api/rest/voice", {**VOICE, "gender": "X"}),
    (132, "/api/rest/voice", {**VOICE, "callers": {"1": "not digits"}}),
    (140, "/api/rest/whatsapp", {k: v for k, v in WHATSAPP.items() if k != "templateId"}),
    (106, "/api/rest/whatsapp", {**WHATSAPP, "from": ""}),
]


@pytest.mark.parametrize(("code", "path", "body"), ERROR_CASES, ids=[f"{c}-{p.rsplit('/', 1)[1]}" for c, p, _ in ERROR_CASES])
def test_nrs360_documented_error_codes(sim, code, path, body):
    headers = {"Authorization": "Basic " + base64.b64encode(b"demo:wrong").decode()} if code == 103 else None
    status, answer = nrs(sim, path, {k: v for k, v in body.items() if v is not None}, headers)
    assert (status, answer) == (SEED_ERRORS[code][0], {"error": {"code": code, "description": SEED_ERRORS[code][1]}})


def test_nrs360_invalid_json_credit_and_server_errors(sim):
    req = urllib.request.Request(sim.url(NRS) + "/api/rest/sms", data=b"{not json", method="POST",
                                 headers={"Content-Type": "application/json", **AUTH})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("accepted invalid JSON")
    except urllib.error.HTTPError as e:
        assert (e.code, orjson.loads(e.read())) == (400, {"error": {"code": 125, "description": "Invalid JSON"}})
    sim.config(NRS, credits=0.0)
    assert nrs(sim, "/api/rest/sms", SMS) == (402, {"error": {"code": 111, "description": "Not enough credits"}})
    sim.reset(NRS)
    sim.config(NRS, error_rate=1.0)
    assert nrs(sim, "/api/rest/sms", SMS) == (500, {"error": {"code": 101, "description": "Internal Database error"}})


# -- SmsGateway24 (smsgateway-android-api.txt) ----------------------------------------------------------

GW = "smsgateway24"


def gw(sim, name: str, form: dict[str, Any]) -> tuple[int, Any]:
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(f"{sim.url(GW)}/getdata/{name}", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, orjson.loads(r.read())


def token(sim) -> str:
    """L1-8: gettoken (email, pass) answers token (string), error (int 0 / 1), message (string)."""
    status, body = gw(sim, "gettoken", {"email": CREDENTIALS["SMSGATEWAY24_EMAIL"],
                                        "pass": CREDENTIALS["SMSGATEWAY24_PASSWORD"]})
    assert status == 200 and shape(body) == {"error": "int", "message": "str", "token": "str"} and body["error"] == 0
    return body["token"]


def test_smsgateway24_addsms_example(sim):
    """L9-31: addsms (token, sendto, body, device_id, sim, timetosend, customerid, urgent) answers
    {"error": 0, "sms_id": 62807347, "message": "Sms has been saved successfully"}."""
    status, body = gw(sim, "addsms", {"token": token(sim), "sendto": "+4915752982212", "body": "Test message",
                                      "device_id": 260, "sim": 1, "timetosend": "2026-05-29 17:21:27",
                                      "customerid": 122, "urgent": 1})
    assert status == 200 and shape(body) == shape({"error": 0, "sms_id": 62807347, "message": "x"})
    assert (body["error"], body["message"]) == (0, "Sms has been saved successfully")


@pytest.mark.parametrize("smsdata", [
    # L45: datajson {"token": ..., "smsdata": [{"sendto": "015752982212", "body": "Test message", "sim": 1,
    #   "timetosend": "2019-07-01 23:50:00", "device_id": 260}, {"sendto": "+4915752982212", "body":
    #   "Test message 2", "sim": 1, "timetosend": "2019-07-01 23:50:00", "device_id": 260, "urgent": 1}]}
    [{"sendto": "015752982212", "body": "Test message", "sim": 1, "timetosend": "2019-07-01 23:50:00", "device_id": 260},
     {"sendto": "+4915752982212", "body": "Test message 2", "sim": 1, "timetosend": "2019-07-01 23:50:00",
      "device_id": 260, "urgent": 1}],
    # L50-72: the same with customerid 122 and urgent 1 / 0
    [{"sendto": "015752982212", "body": "Your password is 12345", "sim": 1, "timetosend": "2019-07-01 23:50:00",
      "device_id": 260, "customerid": 122, "urgent": 1},
     {"sendto": "015752982212", "body": "Regular SMS. Not urgnet", "sim": 1, "timetosend": "2019-07-01 23:50:00",
      "device_id": 260, "customerid": 122, "urgent": 0}],
])
def test_smsgateway24_datajson_examples(sim, smsdata):
    """L46-49: the answer has error (int 0 / 1) and message (string, "empty if all is in order")."""
    datajson = orjson.dumps({"token": token(sim), "smsdata": smsdata}).decode()
    status, body = gw(sim, "addalotofsms", {"datajson": datajson})
    assert status == 200 and shape(body) == {"error": "int", "message": "str"} and body["error"] == 0
    assert [(e["sendto"], e["body"]) for e in sim.ledger(GW)] == [(d["sendto"], d["body"]) for d in smsdata]


def test_smsgateway24_errors_are_error_1_in_a_200(sim):
    """L7-8 / L24-25: "error | int | 0 or 1 - indicates whether there is an error", "message | Mensagem de erro"."""
    status, body = gw(sim, "addalotofsms", {"datajson": orjson.dumps({"token": "0" * 32, "smsdata": []}).decode()})
    assert status == 200 and shape(body) == {"error": "int", "message": "str"} and body["error"] == 1
    status, body = gw(sim, "gettoken", {"email": "nobody@example.com", "pass": "x"})
    assert status == 200 and body["error"] == 1 and body["message"]


# -- Kaleyra (kaleyra-hexa-sms-api.postman.json: the description's "Error Codes" table) ----------------

KALEYRA_SEED = {  # "|E400 |For bulk SMS type should be MKT |" ... as written in the table
    "E400": "For bulk SMS type should be MKT", "E401": "SMS length is exceeding 4000 characters",
    "E402": "Invalid schedule time. Minimum 5 minutes time gap is required and 3 months from now",
    "E404": "If Type is OTP then only one mobile number is allowed",
    "E405": "If Type is TXN then mobile numbers should not be more than 100", "E406": "No Valid mobile numbers found",
    "E600": "To field has to be filled", "E601": "Body cannot be left empty", "E602": "Sender-Id is required",
    "E603": "Port number must contain only numbers", "E604": "Unicode should contain only 0, 1 or AUTO",
    "E605": "Duplicate should contain only 1 or 0", "E606": "Flash should contain only 1 or 0",
    "E608": "ref should contain only alpha numerics", "E609": "ref1 should contain only alpha numerics",
    "E610": "ref2 should contain only alpha numerics", "E611": "Type is required",
    "E615": "Type has to be either TXN, MKT or OTP", "E619": "InValid Sender ID Pattern",
}
K_FORM = {"to": "+34610000001", "body": "Hello", "sender": "KLRHXA", "type": "TXN"}  # the mandatory parameters
K_CASES = [
    ("E400", {"type": "DEFAULT", "to": "+34610000001,+34610000002"}),
    ("E401", {"body": "x" * 4001}), ("E402", {"time": "01-01-2000 10:00:00"}),
    ("E404", {"type": "OTP", "to": "+34610000001,+34610000002"}),
    ("E405", {"to": ",".join(f"+346100{i:05d}" for i in range(101))}), ("E406", {"to": "12,abc"}),
    ("E600", {"to": ""}), ("E601", {"body": ""}), ("E602", {"sender": ""}), ("E603", {"port": "80a"}),
    ("E604", {"unicode": "2"}), ("E605", {"duplicate": "yes"}), ("E606", {"flash": "yes"}),
    ("E608", {"ref": "a-b"}), ("E609", {"ref1": "a-b"}), ("E610", {"ref2": "a-b"}), ("E611", {"type": None}),
    ("E615", {"type": "PROMO"}), ("E619", {"sender": "A!"}),
]


@pytest.mark.parametrize(("code", "change"), K_CASES, ids=[c for c, _ in K_CASES])
def test_kaleyra_error_codes_as_the_seed_writes_them(sim, code, change):
    form = {k: v for k, v in {**K_FORM, **change}.items() if v is not None}
    url = f"{sim.url('kaleyra')}/v1/{CREDENTIALS['KALEYRA_SID']}/messages"
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                 headers={"api-key": CREDENTIALS["KALEYRA_API_KEY"],
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError(f"{code}: accepted")
    except urllib.error.HTTPError as e:
        body = orjson.loads(e.read())
    assert (body["code"], body["message"]) == (code, KALEYRA_SEED[code])


# -- Sendix (sendix-whatsapp-api.postman.json: the description's "Status codes" table) -----------------

# 400: {"Type": "ValidationError", "Title": "One or more validation errors occurred.", "Status": 1000,
#       "TraceId": "11750648", "Errors": {"groupId": ["group ID dfdaebb7-112c-dccf-0234-c9dd6d0ca2cf not found"]}}
SENDIX_400 = {"Type": "ValidationError", "Title": "One or more validation errors occurred.", "Status": 1000,
              "TraceId": "11750648", "Errors": {"groupId": ["group ID dfdaebb7-112c-dccf-0234-c9dd6d0ca2cf not found"]}}


def sendix_token(sim) -> dict[str, str]:
    status, headers, body = call(sim.url("sendix"), "/api/v1/auth/token", {"username": "demo", "password": "demo-secret"})
    assert status == 200 and "TraceId" in headers
    return {"Authorization": f"Bearer {body['token']}"}


def test_sendix_validation_error_is_the_seeds_body(sim):
    """"in the Errors parameter we return the description of the error and the name of the parameter";
    "All requests returning a header named "TraceId" should contain the internal request ID"."""
    group = "dfdaebb7-112c-dccf-0234-c9dd6d0ca2cf"
    status, headers, body = call(sim.url("sendix"), f"/api/v1/groups/{group}/contacts", {"contacts": []},
                                 sendix_token(sim))
    assert status == 400 and shape(body) == shape(SENDIX_400) and body["Errors"] == SENDIX_400["Errors"]
    assert (body["Type"], body["Title"], body["Status"]) == ("ValidationError", SENDIX_400["Title"], 1000)
    assert headers["TraceId"] == body["TraceId"]


def test_sendix_401_and_429_as_the_table_says(sim):
    """"401 | Unauthorized - No valid token provided"; "429 | Rate limiter error: Sendix support 100 requsts
    per 1 secound"."""
    message = {"phone": "34612345678", "templateName": "reminder", "externalId": "x"}
    status, headers, _ = call(sim.url("sendix"), "/api/v1/messages", message)
    assert status == 401 and "TraceId" in headers
    auth = sendix_token(sim)
    sim.config("sendix", rate=3.0)  # the same rule at 3 a second, so that a slow machine still exceeds it
    statuses = [call(sim.url("sendix"), "/api/v1/messages", message, auth)[0] for _ in range(6)]
    assert statuses[0] == 200 and 429 in statuses
