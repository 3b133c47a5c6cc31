"""The HTTP edge: one FastAPI app, served by Modal's web function and by the local server.

``POST /`` checks the secret, bounds the body, validates it, makes it durable through an
:class:`~receiver.intake.Intake`, and answers ``202`` without waiting for any handler.

=====  ============================================================================
code   when
=====  ============================================================================
202    accepted (or a redelivery of a body already accepted: handlers do not rerun)
401    secret missing or wrong (nothing is read beyond the headers)
413    body larger than ``WEBHOOK_MAX_BODY_BYTES`` (the rest is not read)
422    body is not JSON, or not the shape of a LangSmith rule payload
503    no secret configured (never open by default), or the delivery could not be
       recorded: LangSmith retries 5xx answers
=====  ============================================================================

    app = create_app(settings, handlers, intake)
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from receiver.auth import SECRET_HEADER, SECRET_QUERY_PARAM, secret_matches
from receiver.delivery import DeliveryRecord, HandlerState, derive_delivery_id
from receiver.intake import Intake
from receiver.payload import RulePayload
from receiver.registry import Handler
from receiver.settings import Settings
from receiver.store import StoreError

log = logging.getLogger("receiver.http")

SecretQuery = Annotated[
    str | None, Query(alias=SECRET_QUERY_PARAM, description="the webhook secret")
]
SecretHeader = Annotated[
    str | None,
    Header(alias=SECRET_HEADER, description="the webhook secret (preferred)"),
]


class ErrorBody(BaseModel):
    """The body of every refusal: a short reason, never the secret."""

    error: str


class Accepted(BaseModel):
    """The body of a ``202``: the delivery id (the same for a redelivered body)."""

    delivery_id: str
    duplicate: bool


def _refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        401: "missing or wrong secret",
        404: "unknown delivery",
        413: "body too large",
        422: "not JSON, or not a LangSmith rule payload",
        503: "no secret configured, or the store is unavailable: retry later",
    }
    return {code: {"model": ErrorBody, "description": reasons[code]} for code in codes}


class _Rejection(Exception):
    """A request the edge refuses, with its status code and a short reason."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def _error(status_code: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status_code)


def _validation_reason(exc: ValidationError, limit: int = 3) -> str:
    """A short, readable summary of what is wrong with the body."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Rejection(413, f"body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Rejection(413, f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _page(request: Request, handlers: Sequence[Handler], configured: bool) -> str:
    url = html.escape(str(request.base_url))
    names = "".join(f"<li><code>{html.escape(h.name)}</code></li>" for h in handlers)
    warning = (
        ""
        if configured
        else "<p><strong>No secret is configured (LS_WEBHOOK): every delivery is refused"
        " with 503.</strong></p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LangSmith webhook receiver</title></head>
<body>
<h1>LangSmith webhook receiver</h1>
{warning}
<p>In the LangSmith automation rule, add a webhook with this URL and the header
<code>{SECRET_HEADER}: &lt;your LS_WEBHOOK secret&gt;</code> (recommended), or the URL form
<code>{url}?{SECRET_QUERY_PARAM}=&lt;your LS_WEBHOOK secret&gt;</code>:</p>
<pre>{url}</pre>
<p>Handlers run on every accepted delivery:</p>
<ul>{names}</ul>
</body></html>"""


def _openapi_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request-body schema of ``POST /`` (read by hand, so FastAPI cannot infer it)."""
    schema = RulePayload.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {**schema.pop("$defs", {}), "RulePayload": schema}
    body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RulePayload"}}
            },
        }
    }
    return body, components


def create_app(
    settings: Settings,
    handlers: Sequence[Handler],
    intake: Intake,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the receiver's ASGI app; the same object runs on Modal and locally."""
    app = FastAPI(
        title="LangSmith webhook receiver",
        summary="Receives LangSmith automation-rule webhooks and hands them to handlers.",
        lifespan=lifespan,
    )
    body_spec, body_components = _openapi_body()

    def check_secret(query_secret: str | None, header_secret: str | None) -> None:
        if not settings.secrets:
            log.error(
                "refusing a request with 503: no webhook secret is configured;"
                " set LS_WEBHOOK (Modal secret 'ls-webhook')"
            )
            raise _Rejection(503, "the receiver has no secret configured")
        if not secret_matches(header_secret or query_secret, settings.secrets):
            raise _Rejection(401, "missing or wrong webhook secret")

    @app.exception_handler(_Rejection)
    async def rejected(request: Request, exc: _Rejection) -> JSONResponse:
        return _error(exc.status_code, exc.reason)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; `/` has two routes.
            methods = {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                for method in route.methods
            }
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=headers)

    @app.post(
        "/",
        status_code=202,
        summary="Receive one LangSmith rule delivery",
        openapi_extra=body_spec,
        response_model=Accepted,
        responses=_refusals(401, 413, 422, 503),
    )
    async def receive(
        request: Request,
        secret: SecretQuery = None,
        x_webhook_secret: SecretHeader = None,
    ) -> JSONResponse:
        check_secret(secret, x_webhook_secret)
        body = await _read_body(request, settings.max_body_bytes)
        try:
            payload = RulePayload.model_validate_json(body)
        except ValidationError as exc:
            return _error(422, _validation_reason(exc))
        record = DeliveryRecord(
            id=derive_delivery_id(body),
            received_at=time.time(),
            rule_id=str(payload.rule_id),
            runs=len(payload.runs),
            handlers={handler.name: HandlerState() for handler in handlers},
        )
        try:
            new = await intake.accept(record, body)
        except StoreError as exc:
            log.error("delivery=%s not recorded, answering 503: %s", record.id, exc)
            return _error(503, "the delivery could not be recorded; retry later")
        log.info(
            "delivery=%s %s rule=%s runs=%d",
            record.id,
            "accepted" if new else "duplicate",
            record.rule_id,
            record.runs,
        )
        return JSONResponse({"delivery_id": record.id, "duplicate": not new}, status_code=202)

    @app.get(
        "/deliveries/{delivery_id}",
        summary="One delivery's status, per handler",
        responses=_refusals(401, 404, 422, 503),
    )
    async def delivery_status(
        delivery_id: str,
        secret: SecretQuery = None,
        x_webhook_secret: SecretHeader = None,
    ) -> JSONResponse:
        check_secret(secret, x_webhook_secret)
        try:
            record = await intake.status(delivery_id)
        except StoreError as exc:
            log.error("delivery=%s status unavailable: %s", delivery_id, exc)
            return _error(503, "the delivery store is unavailable; retry later")
        if record is None:
            return _error(404, f"no delivery {delivery_id}")
        return JSONResponse(record.to_json())

    @app.get("/healthz", summary="Liveness check (no secret needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, summary="How to connect LangSmith")
    async def index(request: Request) -> str:
        return _page(request, handlers, bool(settings.secrets))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body_components)
        return app.openapi_schema

    app.openapi = openapi
    return app
