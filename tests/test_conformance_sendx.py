"""SendX against code nobody here wrote: the official Python SDK (PyPI `sendx` 2.0.0, generated from
SendX's OpenAPI document, pydantic models).

The SDK drives the simulator, and every answer, success and error, must validate against the
model the SDK declares for it; the adapter's request bodies must validate as the SDK's
`XEmailMessage` / `TemplateEmailMessage` without losing a field. If the simulator and the adapter
shared a wrong idea of SendX, these tests would still catch it.

Seed lines checked (../shared/seeds/sendx-email-api.txt):
- "Error responses follow this format: { "status": "error", "message": "Descriptive error message"}"
- "Every request must include your team API key in a header: X-Team-ApiKey: YOUR_API_KEY"
- the status table: 400 bad request, 401 unauthorized, 404 not found, 422 invalid JSON, 429, 500.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from blastkit import sim_options
from pydantic import TypeAdapter

# The official SDK is a dev dependency (pyproject.toml): a missing one fails here, it is never skipped.
from sendx_python_sdk import ApiClient, Configuration
from sendx_python_sdk.api.email_sending_api import EmailSendingApi
from sendx_python_sdk.api.webhook_api import WebhookApi
from sendx_python_sdk.exceptions import ApiException
from sendx_python_sdk.models.delete_response import DeleteResponse
from sendx_python_sdk.models.error_response import ErrorResponse
from sendx_python_sdk.models.message_response import MessageResponse
from sendx_python_sdk.models.rest_e_webhook import RestEWebhook
from sendx_python_sdk.models.rest_r_webhook import RestRWebhook
from sendx_python_sdk.models.template_email_message import TemplateEmailMessage
from sendx_python_sdk.models.x_email_message import XEmailMessage
from sendx_python_sdk.models.x_email_response import XEmailResponse

from dispatcher.model import Content, Message
from dispatcher.providers.sendx import Sendx, SendxSettings
from dispatcher.render import compile_template

KIND = "sendx"
KEY = "demo-team-key"
TEMPLATE = "template_Welcome000000000000000"
SENT = TypeAdapter(list[XEmailResponse])
HOOKS = TypeAdapter(list[RestRWebhook])
# The statuses each SDK operation declares an ErrorResponse for (its `_response_types_map`).
TYPED_ERRORS = {"send_email": {401, 422, 429, 500}, "send_email_with_template": {401, 422, 429, 500},
                "create_webhook": {401, 403, 422, 500}, "delete_webhook": {401, 404, 422, 500},
                "get_all_webhooks": {401, 500}}


def client(sim, key: str = KEY) -> ApiClient:
    return ApiClient(Configuration(host=sim.url(KIND) + "/api/v1/rest", api_key={"TeamApiKey": key}))


def email(**over: Any) -> XEmailMessage:
    return XEmailMessage.from_dict({"from": {"email": "news@example.com", "name": "ACME"},
                                    "to": [{"email": "ana@example.com", "name": "Ana"}],
                                    "subject": "Hello", "htmlBody": "<p>Hi</p>", **over})


def template(**over: Any) -> TemplateEmailMessage:
    return TemplateEmailMessage.from_dict({"from": {"email": "news@example.com"},
                                           "to": [{"email": "ana@example.com", "customFields": {"name": "Ana"}}],
                                           "subject": "Hello", "template": TEMPLATE, **over})


def answer(api: Any, op: str, *args: Any) -> tuple[int, bytes]:
    """The raw answer to one SDK call (status, body), read before any model sees it."""
    r = getattr(api, f"{op}_without_preload_content")(*args)
    return r.status, r.data


def assert_error(api: Any, op: str, *args: Any, status: int) -> ErrorResponse:
    """The call fails with `status`; its body is an ErrorResponse, through the SDK's own typed path too."""
    got, raw = answer(api, op, *args)
    assert got == status, raw
    parsed = ErrorResponse.model_validate_json(raw)  # raises on `"status": 401` ("Input should be a valid string")
    assert parsed.status == "error" and parsed.message
    if status in TYPED_ERRORS[op]:
        with pytest.raises(ApiException) as e:
            getattr(api, op)(*args)
        assert e.value.status == status and isinstance(e.value.data, ErrorResponse), e.value.body
    return parsed


# -- success answers ------------------------------------------------------------------------------

def test_sdk_send_email_answer_is_a_list_of_x_email_response(sim):
    sim_options(sim, KIND, compat="sdk")
    api = EmailSendingApi(client(sim))
    msg = email(to=[{"email": "ana@example.com"}, {"email": "unsubscribed@example.com"}])
    status, raw = answer(api, "send_email", msg)
    assert status == 200
    items = SENT.validate_json(raw)
    assert [(i.to, i.error_code) for i in items] == [("ana@example.com", 0), ("unsubscribed@example.com", 1)]
    assert items[0].message_id and items[1].message_id is None
    typed = api.send_email(email())  # the SDK's own deserialisation
    assert isinstance(typed[0], XEmailResponse) and typed[0].error_code == 0


def test_sdk_send_template_answer_is_a_list_of_x_email_response(sim):
    sim_options(sim, KIND, compat="sdk")
    api = EmailSendingApi(client(sim))
    typed = api.send_email_with_template(template())
    assert [(i.to, i.error_code) for i in typed] == [("ana@example.com", 0)]
    assert sim.ledger(KIND)[0]["customFields"] == {"name": "Ana"}


def test_docs_202_answer_is_a_message_response(sim):
    """The current docs' 202 (queued) is not in the SDK's map for /send/email: it must still be the
    generic {status, message} the SDK models as MessageResponse, and the SDK must not raise on it."""
    api = EmailSendingApi(client(sim))
    status, raw = answer(api, "send_email", email())
    assert status == 202
    assert MessageResponse.model_validate_json(raw).status == "success"
    assert api.send_email(email()) is None  # a 2xx the SDK has no model for: no exception


def test_webhook_answers_validate(sim):
    api = WebhookApi(client(sim))
    hook = RestEWebhook.from_dict({"url": "http://127.0.0.1:9/hook", "enabled": True, "opened": True})
    created = api.create_webhook(hook)
    assert isinstance(created, RestRWebhook) and created.id.startswith("webhook_") and created.opened is True
    status, raw = answer(api, "get_all_webhooks")
    assert status == 200 and [h.id for h in HOOKS.validate_json(raw)] == [created.id]
    status, raw = answer(api, "delete_webhook", created.id)
    assert status == 200 and DeleteResponse.model_validate_json(raw).status == "success"


# -- error answers ------------------------------------------------------------------------------------

def test_bad_key_is_a_401_error_response(sim):
    err = assert_error(EmailSendingApi(client(sim, key="wrong")), "send_email", email(), status=401)
    assert err.message == "The Team ID or API Key specified is not valid"
    assert_error(WebhookApi(client(sim, key="wrong")), "get_all_webhooks", status=401)


@pytest.mark.parametrize(("over", "needle"), [
    ({"from": {"email": "news@unverified.test"}}, "not verified"),
    ({"to": [{"email": "not-an-address"}]}, "Invalid email address"),
    ({"subject": " "}, "subject"),
    ({"htmlBody": ""}, "htmlBody"),
])
def test_invalid_email_is_a_400_error_response(sim, over, needle):
    err = assert_error(EmailSendingApi(client(sim)), "send_email", email(**over), status=400)
    assert needle in err.message


def test_unknown_template_is_a_404_error_response(sim):
    api = EmailSendingApi(client(sim))
    assert_error(api, "send_email_with_template", template(template="template_Missing000000000000000"), status=404)
    assert_error(api, "send_email_with_template", template(template="template_bad"), status=400)


def test_malformed_json_is_a_422_error_response(sim):
    c = client(sim)
    r = c.rest_client.request("POST", sim.url(KIND) + "/api/v1/rest/send/email",
                              headers={"X-Team-ApiKey": KEY, "Content-Type": "text/plain"}, body="{not json")
    r.read()
    assert r.status == 422
    assert ErrorResponse.model_validate_json(r.data).message == "Request body is not in proper format"


def test_rate_and_plan_limits_are_429_error_responses(sim):
    api = EmailSendingApi(client(sim))
    sim.config(KIND, rate=1.0)
    assert answer(api, "send_email", email())[0] == 202
    err = assert_error(api, "send_email", email(), status=429)  # the same second: over 1 request/s
    assert "Rate limit" in err.message
    sim.reset(KIND)
    sim.config(KIND, credits=0.0)
    err = assert_error(api, "send_email", email(), status=429)
    assert "upgrade your plan" in err.message


def test_server_error_is_a_500_error_response(sim):
    sim.config(KIND, error_rate=1.0)
    assert_error(EmailSendingApi(client(sim)), "send_email", email(), status=500)


def test_webhook_errors_are_error_responses(sim):
    api = WebhookApi(client(sim))
    assert_error(api, "delete_webhook", "webhook_Missing00000000000000000", status=404)
    c = client(sim)
    r = c.rest_client.request("POST", sim.url(KIND) + "/api/v1/rest/webhook",
                              headers={"X-Team-ApiKey": KEY, "Content-Type": "application/json"},
                              body='{"url": "ftp://x", "enabled": true}')
    r.read()
    assert r.status == 400 and ErrorResponse.model_validate_json(r.data).status == "error"


# -- the adapter's requests as the SDK models them -----------------------------------------------------

def messages(options: dict[str, Any], template_text: str = "<b>Hi {name}</b>") -> list[Message]:
    content = Content("email", compile_template(template_text), "news@example.com", "Hello", options)
    return [Message(i, f"r{i}", f"u{i}@example.com", f"<b>Hi N{i}</b>", {"name": f"N{i}"}, {"name": f"N{i}"},
                    "mail", "email", content=content) for i in range(2)]


@pytest.fixture
def adapter() -> Sendx:
    return Sendx("mail", SendxSettings(url="http://127.0.0.1:1", api_key_env="SENDX_API_KEY", batch_size=50))


@pytest.mark.parametrize("options", [
    {},
    {"from_name": "ACME", "reply_to": "help@example.com", "reply_to_name": "Help", "name_field": "name"},
    {"headers": {"X-Campaign": "spring", "X-Count": 3}},
])
def test_adapter_email_body_is_an_x_email_message(adapter, options):
    req = adapter.build(messages(options)[:1])
    assert req.url.endswith("/api/v1/rest/send/email")
    body = orjson.loads(req.body)
    model = XEmailMessage.model_validate(body)  # strict types: StrictStr everywhere
    assert model.to_dict() == body  # and no field the SDK does not know (it would drop it)


@pytest.mark.parametrize("options", [
    {"template": TEMPLATE},
    {"template": TEMPLATE, "from_name": "ACME", "reply_to": "help@example.com", "name_field": "name"},
])
def test_adapter_template_body_is_a_template_email_message(adapter, options):
    req = adapter.build(messages(options))
    assert req.url.endswith("/api/v1/rest/send/template")
    body = orjson.loads(req.body)
    model = TemplateEmailMessage.model_validate(body)
    assert model.to_dict() == body
    assert [t.custom_fields for t in model.to] == [{"name": "N0"}, {"name": "N1"}]


def test_adapter_refuses_what_template_email_message_cannot_carry(adapter):
    """`headers` is a field of XEmailMessage only: with a template it would be dropped, so it is refused."""
    [m] = messages({"template": TEMPLATE, "headers": {"X-Campaign": "spring"}})[:1]
    assert adapter.check(m) == ("bad_option", "options.headers cannot go with options.template: "
                                              "SendX's /send/template takes no headers")
    [m] = messages({"headers": {"X-Campaign": "spring"}})[:1]
    assert adapter.check(m) is None
