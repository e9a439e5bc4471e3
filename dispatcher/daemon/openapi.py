"""The OpenAPI 3.1 document of the daemon's HTTP API (served at /v1/openapi.json).

Written by hand rather than generated: it is the contract applications code against, and
tests check it with a validator and check every answer of the API against it.
"""

from __future__ import annotations

from typing import Any

CHANNELS = ["sms", "whatsapp", "email", "voice", "rcs"]
STATUSES = ["queued", "sending", "sent", "failed", "rejected", "cancelled"]


def _nullable(t: str, **kw: Any) -> dict[str, Any]:
    return {"type": [t, "null"], **kw}


def _error_response(text: str) -> dict[str, Any]:
    return {"description": text,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


# The schemas of the documents the API takes and gives.
MESSAGE_IN: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["to"],
    "properties": {
        "to": {"type": "string", "minLength": 1, "description": "phone number (any usual format) or email"},
        "channel": {"type": "string", "enum": CHANNELS, "default": "sms"},
        "body": {"type": "string", "description": "the text as is (wins over template)"},
        "template": {"type": "string", "description": "a template with {variables} and filters"},
        "variables": {"type": "object", "description": "values for the template's {variables}"},
        "campaign": {"type": "string", "description": "a name in the daemon's [campaigns]"},
        "provider": {"type": "string", "description": "a provider alias (else route)"},
        "route": {"type": "string", "description": "a name in [routes]"},
        "priority": {"type": "integer", "minimum": -32768, "maximum": 32767, "default": 0},
        "not_before": {"type": "string", "format": "date-time", "description": "not sent before (RFC 3339)"},
        "key": {"type": "string", "minLength": 1, "maxLength": 200,
                "description": "idempotency key: a re-post returns the stored message and enqueues nothing"},
    }}
ACCEPTED: dict[str, Any] = {
    "type": "object", "required": ["id", "key", "status", "duplicate"],
    "properties": {"id": {"type": "integer"}, "key": _nullable("string"),
                   "status": {"type": "string", "enum": STATUSES},
                   "duplicate": {"type": "boolean", "description": "the key was stored already"}}}
MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "key", "status", "to", "channel", "provider", "message_id", "parts", "code", "error",
                 "attempts", "created_at", "finished_at", "delivery"],
    "properties": {
        "id": {"type": "integer"}, "key": _nullable("string"),
        "status": {"type": "string", "enum": STATUSES}, "to": {"type": "string"},
        "channel": {"type": "string"}, "campaign": _nullable("string"),
        "provider": _nullable("string", description="the provider alias that took it (or was asked for)"),
        "message_id": _nullable("string", description="the provider's message id"),
        "sent_to": _nullable("string", description="the normalised address"),
        "parts": _nullable("integer"), "code": _nullable("string"), "error": _nullable("string"),
        "attempts": {"type": "integer"}, "priority": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "not_before": _nullable("string", format="date-time"),
        "claimed_at": _nullable("string", format="date-time"),
        "finished_at": _nullable("string", format="date-time"),
        "delivery": {"type": "object", "required": ["status", "at"], "properties": {
            "status": _nullable("string", description="from delivery reports: delivered, undelivered, read..."),
            "at": _nullable("string", format="date-time")}},
    }}
ERROR: dict[str, Any] = {  # RFC 9457, with `code`, `errors` and `request_id` as extension members
    "type": "object", "required": ["type", "title", "status", "detail", "code", "errors"],
    "properties": {
        "type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"}, "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "code", "message"],
            "properties": {"index": _nullable("integer"), "field": {"type": "string"}, "code": {"type": "string"},
                           "message": {"type": "string"}, "stored_hash": {"type": "string"},
                           "posted_hash": {"type": "string"}}}}}}


COUNTS: dict[str, Any] = {
    "type": "object", "description": "rows by status; delivered and undelivered among the sent, from reports",
    "required": [*STATUSES, "delivered", "undelivered"],
    "properties": {s: {"type": "integer"} for s in [*STATUSES, "delivered", "undelivered"]}}
CAMPAIGN: dict[str, Any] = {
    "type": "object", "required": ["name", "state", "weight", "counts", "rate", "cost"],
    "properties": {
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["active", "paused", "cancelled"]},
        "weight": {"type": "integer", "description": "its share of a provider against the other active campaigns"},
        "updated_at": _nullable("string", format="date-time"),
        "counts": {"$ref": "#/components/schemas/Counts"},
        "rate": {"type": "number", "description": "messages sent a second over the last minute"},
        "cost": {"type": "object", "required": ["sent", "delivered"],
                 "description": "units (SMS parts, else messages) times the `price` of the provider that took "
                                "them, as the blast's --dry-run prices: of the sent rows, and of those delivered",
                 "properties": {"sent": {"type": "number", "minimum": 0}, "delivered": {"type": "number", "minimum": 0}}},
        "retried": {"type": "integer", "description": "retry-failed: the failed rows queued again"}}}
CAMPAIGN_UPDATE: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["weight"],
    "properties": {"weight": {"type": "integer", "minimum": 1, "maximum": 1000,
                              "description": "its share of a provider: weight / the sum of the active campaigns'"}}}
EVENT: dict[str, Any] = {
    "type": "object", "required": ["event_id", "id", "status", "code", "error", "provider", "message_id", "at",
                                   "webhook"],
    "properties": {
        "event_id": {"type": "integer"}, "id": {"type": "integer", "description": "the message's id"},
        "status": {"type": "string", "description": "queued, sent, failed, rejected, cancelled, deferred, "
                                                    "delivered, undelivered, read..."},
        "code": _nullable("string"), "error": _nullable("string"), "provider": _nullable("string"),
        "message_id": _nullable("string", description="the provider's message id"),
        "at": {"type": "string", "format": "date-time"},
        "webhook": {"type": "object", "required": ["delivered_at", "attempts"], "properties": {
            "delivered_at": _nullable("string", format="date-time", description="when the receiver took it"),
            "attempts": {"type": "integer", "description": "webhook POSTs that carried it"}}}}}
EVENT_PAGE: dict[str, Any] = {
    "type": "object", "required": ["events", "next_cursor"],
    "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                   "next_cursor": _nullable("string", description="the cursor of the next page; null on the last")}}
THROUGHPUT: dict[str, Any] = {
    "type": "object", "required": ["every", "until", "sent", "failed"],
    "properties": {"every": {"type": "integer", "description": "seconds a number stands for"},
                   "until": {"type": "string", "format": "date-time", "description": "the end of the last second"},
                   "sent": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                   "failed": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}
MESSAGE_PAGE: dict[str, Any] = {
    "type": "object", "required": ["messages", "next_cursor"],
    "properties": {"messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                   "next_cursor": _nullable("string", description="the cursor of the next page; null on the last"),
                   "resume_cursor": _nullable("string", description=(
                       "oldest first: the cursor after this page's last message, on the last page too (null "
                       "when the page is empty: the request's cursor stands), where a later request picks up "
                       "the messages that arrived since, each once"))}}


def _ok(text: str, schema: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _message_links(id_expression: str) -> dict[str, Any]:
    """OpenAPI links from an answer naming a message to what can be asked of it: the message, its events, its
    cancel. The message's own `id` (the outbox's), never `message_id` (the provider's, a name a tool may
    read as a message's id: schemathesis' inference did)."""
    return {name: {"operationId": op, "parameters": {"id": id_expression}}
            for name, op in (("GetMessage", "getMessage"), ("ListMessageEvents", "listMessageEvents"),
                             ("CancelMessage", "cancelMessage"))}


def _query(name: str, text: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


def control_paths(auth: list[dict[str, Any]], errors: dict[str, Any]) -> dict[str, Any]:
    """The paths of campaigns.py: cancel a message, campaigns' state and control."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    missing = _error_response("No campaign of that name in the daemon's configuration")
    return {
        "/v1/messages/{id}/cancel": {"post": {
            "operationId": "cancelMessage", "summary": "Cancel a queued message", "security": auth,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _ok("The message, now cancelled", "Message"), **errors,
                          "404": _error_response("No such message"),
                          "409": _error_response("Not queued (sending or finished): its status says which")}}},
        "/v1/campaigns": {"get": {
            "operationId": "listCampaigns", "summary": "Every campaign: state, weight, counts, rate",
            "security": auth,
            "responses": {"200": {"description": "The campaigns", "content": {"application/json": {"schema": {
                "type": "object", "required": ["campaigns"], "properties": {"campaigns": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Campaign"}}}}}}}, **errors}}},
        "/v1/campaigns/{name}": {"get": {
            "operationId": "getCampaign", "summary": "A campaign's state, counts by status and rate",
            "security": auth, "parameters": [name],
            "responses": {"200": _ok("The campaign", "Campaign"), **errors, "404": missing}},
            **{method: {
                "operationId": op, "security": auth, "parameters": [name],
                "summary": "Set a campaign's weight: its share of a provider against the other active campaigns "
                           "(weight / the sum of theirs), from the next claim of every daemon",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CampaignUpdate"}}}},
                "responses": {"200": _ok("The campaign after it", "Campaign"), **errors, "404": missing,
                              "415": _error_response("Not application/json"),
                              "422": _error_response("No weight, or not a whole number from 1 to 1000")}}
               for method, op in (("patch", "updateCampaign"), ("post", "setCampaign"))}},
        **{f"/v1/campaigns/{{name}}/{action}": {"post": {
            "operationId": op, "summary": text, "security": auth, "parameters": [name],
            "responses": {"200": _ok("The campaign after it", "Campaign"), **errors, "404": missing}}}
           for action, op, text in (
               ("pause", "pauseCampaign", "Stop sending the campaign: its rows stay queued, and those the "
                "daemons claimed and had not put on the wire are queued again. It answers once they are: after "
                "the answer nothing of the campaign goes on the wire"),
               ("resume", "resumeCampaign", "Claim the campaign's rows again"),
               ("cancel", "cancelCampaign", "Cancel the campaign: its queued rows, and those the daemons claimed "
                "and had not put on the wire, become cancelled. It answers once they have: after the answer "
                "nothing of the campaign goes on the wire"),
               ("retry-failed", "retryFailedCampaign", "Queue the campaign's failed rows again"))},
    }


def view_paths(auth: list[dict[str, Any]], errors: dict[str, Any]) -> dict[str, Any]:
    """The paths of views.py: a message's events, the worker's throughput."""
    return {
        "/v1/messages/{id}/events": {"get": {
            "operationId": "listMessageEvents", "security": auth,
            "summary": "A message's status events, oldest first (what the webhooks deliver), a page at a time",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                           _query("cursor", "next_cursor of the page before", type="string"),
                           _query("limit", "events a page", type="integer", minimum=1, maximum=1000,
                                  default=100)],
            "responses": {"200": _ok("A page of the message's events (none left past retention_days)",
                                     "EventPage"), **errors, "404": _error_response("No such message")}}},
        "/v1/throughput": {"get": {
            "operationId": "getThroughput", "security": auth, "tags": ["messages"],
            "summary": "This worker's rows finished a second, sent and failed (rejected too), the last 5 minutes",
            "responses": {"200": _ok("One number a second, oldest first", "Throughput"), **errors}}},
    }


def document() -> dict[str, Any]:
    auth = [{"bearer": []}]
    errors = {str(s): _error_response(t) for s, t in (
        (400, "Malformed JSON, or not a JSON object"), (401, "No API key"), (403, "Wrong API key"),
        (503, "The database cannot be reached now; try again"), (500, "An unexpected error (see its request_id)"))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dispatcher daemon", "version": "1",
                 "description": "Submit messages into the outbox and read their state."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"MessageIn": MESSAGE_IN, "Accepted": ACCEPTED, "Message": MESSAGE, "Error": ERROR,
                        "SubmitRequest": {"type": "object", "additionalProperties": False, "required": ["messages"],
                                          "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": 1000,
                                                                      "items": {"$ref": "#/components/schemas/MessageIn"}}}},
                        "Counts": COUNTS, "Campaign": CAMPAIGN, "CampaignUpdate": CAMPAIGN_UPDATE, "MessagePage": MESSAGE_PAGE,
                        "Event": EVENT, "EventPage": EVENT_PAGE, "Throughput": THROUGHPUT,
                        "SubmitResponse": {"type": "object", "required": ["messages"], "properties": {
                            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Accepted"}}}}},
        },
        "paths": {
            "/v1/messages": {
                "post": {
                    "operationId": "submitMessages", "summary": "Queue up to 1,000 messages in one transaction",
                    "security": auth,
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "description": "keys the messages without a `key`: a single message by it, "
                                                   "the Nth of several by KEY/N; a re-post answers the stored ones",
                                    "schema": {"type": "string", "minLength": 1, "maxLength": 190}}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SubmitRequest"}}}},
                    "responses": {
                        "202": {"description": "Queued (or already stored under their keys)",
                                "headers": {"Location": {"description": "/v1/messages/{id} when one message was posted",
                                                         "schema": {"type": "string"}}},
                                "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/SubmitResponse"}}},
                                "links": _message_links("$response.body#/messages/0/id")},
                        **errors,
                        "409": _error_response("A key already stands for another payload"),
                        "413": _error_response("The body is too large"),
                        "415": _error_response("Content-Type is not application/json"),
                        "422": _error_response("Messages refused: the index and field of every error"),
                    }},
                "get": {
                    "operationId": "listMessages",
                    "summary": "A message by its idempotency key (?key=), or a page of messages in id order",
                    "security": auth,
                    "parameters": [
                        _query("key", "the message of this idempotency key (the other parameters then unused)",
                               type="string"),
                        _query("campaign", "only this campaign's", type="string"),
                        _query("status", "only these statuses, comma-separated", type="string"),
                        _query("since", "only messages created at or after (RFC 3339)", type="string",
                               format="date-time"),
                        _query("limit", "messages a page", type="integer", minimum=1, maximum=1000, default=100),
                        _query("cursor", "next_cursor of the page before", type="string"),
                        _query("order", "asc: oldest first, after cursor, each message exactly once while new "
                                        "ones arrive (in the order of their inserting transactions, then id); "
                                        "desc: newest first by id, before cursor",
                               type="string", enum=["asc", "desc"], default="asc")],
                    "responses": {"200": {"description": "The message (?key=), or a page", "content": {
                        "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Message"},
                                                                  {"$ref": "#/components/schemas/MessagePage"}]}}}},
                        **errors, "404": _error_response("No message with that key"),
                        "422": _error_response("The key holds a character PostgreSQL cannot store")}},
            },
            "/v1/messages/{id}": {
                "get": {
                    "operationId": "getMessage", "summary": "A message by id", "security": auth,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The message", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Message"}}}},
                        **errors, "404": _error_response("No such message")}},
            },
            **control_paths(auth, errors),
            **view_paths(auth, errors),
        },
    }


# -- what generated clients and schemathesis need besides the shapes: names, tags, examples, every status --
EXAMPLE_MESSAGE = {"id": 1042, "key": "order-77", "status": "sent", "to": "+34600000001", "channel": "sms",
                   "campaign": None, "provider": "nrs", "message_id": "SM8f3a", "sent_to": "+34600000001",
                   "parts": 1, "code": None, "error": None, "attempts": 1, "priority": 0,
                   "created_at": "2026-12-05T09:00:00.123456+00:00", "not_before": "2026-12-05T09:00:00.123456+00:00",
                   "claimed_at": "2026-12-05T09:00:00.2+00:00", "finished_at": "2026-12-05T09:00:00.4+00:00",
                   "delivery": {"status": "delivered", "at": "2026-12-05T09:00:03.512+00:00"}}
EXAMPLES: dict[str, Any] = {
    "SubmitRequest": {"messages": [{"to": "+34600000001", "body": "Your code is 1234", "key": "order-77"}]},
    "SubmitResponse": {"messages": [{"id": 1042, "key": "order-77", "status": "queued", "duplicate": False}]},
    "Message": EXAMPLE_MESSAGE,
    "Error": {"type": "https://dispatcher.dev/problems/invalid", "title": "Unprocessable Content", "status": 422,
              "detail": "1 message(s) refused; nothing was stored", "code": "invalid",
              "errors": [{"index": 0, "field": "messages[0].to", "code": "required",
                          "message": "a recipient (phone number or email address) is required"}],
              "request_id": "5f0c1e9a"},
}
EXAMPLES["Campaign"] = {"name": "promo", "state": "active", "weight": 1, "updated_at": None, "rate": 12.5,
                        "cost": {"sent": 0.0, "delivered": 0.0},
                        "counts": {s: 0 for s in [*STATUSES, "cancelled", "delivered", "undelivered"]}}
EXAMPLES["CampaignUpdate"] = {"weight": 3}
EXAMPLES["Throughput"] = {"every": 1, "until": "2026-12-05T09:00:03+00:00", "sent": [40, 52, 50], "failed": [0, 1, 0]}
EXAMPLES["EventPage"] = {"next_cursor": None, "events": [
    {"event_id": 7, "id": 1042, "status": "queued", "code": None, "error": None, "provider": None, "message_id": None,
     "at": "2026-12-05T09:00:00.123456+00:00", "webhook": {"delivered_at": "2026-12-05T09:00:00.3+00:00", "attempts": 1}},
    {"event_id": 9, "id": 1042, "status": "sent", "code": None, "error": None, "provider": "nrs", "message_id": "SM8f3a",
     "at": "2026-12-05T09:00:00.4+00:00", "webhook": {"delivered_at": None, "attempts": 0}}]}
# statuses any operation may answer: the middleware's and the guard's
COMMON = {"401": "No API key", "403": "Wrong API key", "405": "Method not allowed on this path",
          "500": "An unexpected error (see its request_id)", "503": "The database cannot be reached now; try again"}
TAGS = [{"name": "messages", "description": "Submit messages and read their state"},
        {"name": "campaigns", "description": "Campaigns' state and control"},
        {"name": "meta", "description": "The API's own description"}]


OPERATION_IDS = {("post", "/v1/messages"): "submitMessages", ("get", "/v1/messages"): "listMessages",
                 ("get", "/v1/messages/{id}"): "getMessage"}
IDEMPOTENCY = ("Stripe's semantics, kept 24 h by every daemon: the same key with the same body replays the first "
               "answer byte for byte (with `Idempotent-Replayed: true`), with another body it is a 422 "
               "`idempotency_key_reused`, while the first is still handled a 409 with `Retry-After`. It also keys "
               "the messages without a `key`: a single message by it, the Nth of several by KEY/N.")


_STATUS = "(queued|sending|sent|failed|rejected|cancelled)"
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "key": {"minLength": 1},  # ?key= (empty) is a 400
    "cursor": {"pattern": "^[0-9]{1,18}$"},  # a next_cursor: an id
    "status": {"pattern": f"^({_STATUS}(,{_STATUS})*)?$"},  # empty: any status
    "since": {"anyOf": [{"format": "date-time"}, {"maxLength": 0}]},  # empty: since ever
    "order": {"enum": ["asc", "desc", ""]},  # empty: asc
}
PATH_QUERY_SCHEMAS = {("/v1/messages", "cursor"): {"pattern": "^([0-9]{1,20}-)?[0-9]{1,18}$"}}  # (insert xid-)id


def _operation_id(method: str, path: str) -> str:
    if (method, path) in OPERATION_IDS:
        return OPERATION_IDS[(method, path)]
    words = [w.strip("{}") for w in path.split("/") if w and w != "v1"]
    return method + "".join(w[:1].upper() + w[1:].replace("-", "") for w in words)


def _example(content: dict[str, Any]) -> None:
    for media in content.values():
        ref = media.get("schema", {}).get("$ref", "")
        name = ref.rsplit("/", 1)[-1]
        if name in EXAMPLES and "example" not in media:
            media["example"] = EXAMPLES[name]


def complete(doc: dict[str, Any], server: str = "/") -> dict[str, Any]:
    """`doc` with servers, tags, an operationId and examples for every operation, every common status
    documented, and the document's own path: what generated clients name their methods by and what
    schemathesis checks every answer against."""
    doc["servers"] = [{"url": server}]
    doc["tags"] = TAGS
    paths = doc["paths"]
    paths.setdefault("/v1/openapi.json", {"get": {
        "operationId": "getOpenApi", "summary": "This document (no API key needed)", "security": [],
        "responses": {"200": {"description": "The OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    for path, ops in paths.items():
        for method, op in ops.items():
            op.setdefault("operationId", _operation_id(method, path))
            for p in op.get("parameters", []):
                if p["name"] == "Idempotency-Key":
                    p["description"] = IDEMPOTENCY
                exact = PATH_QUERY_SCHEMAS.get((path, p["name"])) or QUERY_SCHEMAS.get(p["name"])
                if p["in"] == "query" and exact is not None:  # what the handler takes, exactly
                    p["schema"] = {k: v for k, v in p["schema"].items() if k != "format"} | exact
                if p["name"] == "id" and p["in"] == "path":  # what the handler takes: 1 to 18 digits
                    p["schema"] = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
            op.setdefault("tags", ["meta" if path.endswith("openapi.json") else
                                   "campaigns" if path.startswith("/v1/campaigns") else "messages"])
            if "requestBody" in op:
                _example(op["requestBody"]["content"])
            responses = op["responses"]
            if "202" in responses:
                responses["202"].setdefault("headers", {})["Idempotent-Replayed"] = {
                    "description": "true when this is the stored answer to an earlier request with the same "
                                   "Idempotency-Key", "schema": {"type": "string", "enum": ["true"]}}
            for status, text in COMMON.items():
                if op.get("security") != [] or status in ("405", "500"):
                    responses.setdefault(status, _error_response(text))
            if path.endswith("/{id}") or "{id}" in path:
                responses.setdefault("400", _error_response("The id is not a message id"))
            for response in responses.values():
                _example(response.get("content", {}))
    return doc
