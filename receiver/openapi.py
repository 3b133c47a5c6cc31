"""The OpenAPI document of the receiver's HTTP API, built from the payload models.

The edge is a plain Starlette app (FastAPI's import alone cost ~240 ms of cold start), so
the document is written here rather than inferred; it is built on the first request for
``/openapi.json``, never at start-up. Schemathesis tests the app against it.

    document = openapi_document()
    document["paths"]["/"]["post"]["responses"]["202"]
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from receiver.auth import SECRET_HEADER, SECRET_QUERY_PARAM
from receiver.payload import RulePayload


class ErrorBody(BaseModel):
    """The body of every refusal: a short reason, never the secret."""

    error: str


class Accepted(BaseModel):
    """The body of a ``202``: the delivery id (the same for a redelivered body)."""

    delivery_id: str
    duplicate: bool


class HandlerView(BaseModel):
    status: str
    attempts: int
    last_error: str | None


class DeliveryView(BaseModel):
    """One delivery's status, per handler (``GET /deliveries/{id}``)."""

    id: str
    status: str
    received_at: float
    rule_id: str
    runs: int
    handlers: dict[str, HandlerView]


REFUSALS = {
    401: "missing or wrong secret",
    404: "unknown delivery",
    413: "body too large",
    422: "not JSON, or not a LangSmith rule payload",
    503: "no secret configured, or the store is unavailable: retry later",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: tuple[str, str, dict[str, Any]], *refusals: int) -> dict[str, Any]:
    code, description, schema = ok
    responses = {code: _json(schema, description)}
    for status in refusals:
        responses[str(status)] = _json(_ref("ErrorBody"), REFUSALS[status])
    return responses


SECRET_PARAMETERS = [
    {
        "name": SECRET_QUERY_PARAM,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "the webhook secret",
    },
    {
        "name": SECRET_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the webhook secret (preferred: kept out of access logs)",
    },
]


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once)."""
    schemas: dict[str, Any] = {}
    for model in (RulePayload, Accepted, ErrorBody, DeliveryView):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    html = {
        "description": "how to connect LangSmith",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "LangSmith webhook receiver", "version": "1.0.0"},
        "paths": {
            "/": {
                "post": {
                    "summary": "Receive one LangSmith rule delivery",
                    "parameters": SECRET_PARAMETERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RulePayload")}},
                    },
                    "responses": _responses(
                        ("202", "accepted", _ref("Accepted")), 401, 413, 422, 503
                    ),
                },
                "get": {"summary": "How to connect LangSmith", "responses": {"200": html}},
            },
            "/deliveries/{delivery_id}": {
                "get": {
                    "summary": "One delivery's status, per handler",
                    "parameters": [
                        {
                            "name": "delivery_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        *SECRET_PARAMETERS,
                    ],
                    "responses": _responses(
                        ("200", "the delivery", _ref("DeliveryView")), 401, 404, 503
                    ),
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness check (no secret needed)",
                    "responses": _responses(
                        (
                            "200",
                            "alive",
                            {"type": "object", "properties": {"status": {"const": "ok"}}},
                        )
                    ),
                }
            },
        },
        "components": {"schemas": schemas},
    }
