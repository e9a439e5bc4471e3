"""The OpenAPI 3.1 document of the daemon's HTTP API (served at /v1/openapi.json).

Written by hand rather than generated: it is the contract applications code against, and
tests check it with a validator and check every answer of the API against it.
"""

from __future__ import annotations

from typing import Any

CHANNELS = ["sms", "whatsapp", "email", "voice", "rcs"]
STATUSES = ["queued", "sending", "sent", "failed", "rejected"]


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
                        "SubmitResponse": {"type": "object", "required": ["messages"], "properties": {
                            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Accepted"}}}}},
        },
        "paths": {
            "/v1/messages": {
                "post": {
                    "summary": "Queue up to 1,000 messages in one transaction", "security": auth,
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
                            "application/json": {"schema": {"$ref": "#/components/schemas/SubmitResponse"}}}},
                        **errors,
                        "409": _error_response("A key already stands for another payload"),
                        "413": _error_response("The body is too large"),
                        "415": _error_response("Content-Type is not application/json"),
                        "422": _error_response("Messages refused: the index and field of every error"),
                    }},
                "get": {
                    "summary": "A message by its idempotency key", "security": auth,
                    "parameters": [{"name": "key", "in": "query", "required": True,
                                    "schema": {"type": "string", "minLength": 1}}],
                    "responses": {"200": {"description": "The message", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Message"}}}},
                        **errors, "404": _error_response("No message with that key"),
                        "422": _error_response("The key holds a character PostgreSQL cannot store")}},
            },
            "/v1/messages/{id}": {
                "get": {
                    "summary": "A message by id", "security": auth,
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The message", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Message"}}}},
                        **errors, "404": _error_response("No such message")}},
            },
        },
    }
