"""The HTTP edge: one ASGI app, served by Modal's web function and by the local server.

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

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from receiver.auth import SECRET_HEADER, SECRET_QUERY_PARAM, secret_matches
from receiver.delivery import DeliveryRecord, HandlerState, derive_delivery_id
from receiver.intake import Intake
from receiver.payload import RulePayload
from receiver.registry import Handler
from receiver.settings import Settings
from receiver.store import StoreError

log = logging.getLogger("receiver.http")


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


async def _read_body(request: Request, limit: int) -> bytearray:
    """The body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    Chunks are appended to one ``bytearray`` (no list of chunks joined into a second copy):
    a 25 MB body costs 25 MB here, not 50.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Rejection(413, f"body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise _Rejection(413, f"body is over the {limit}-byte limit")
        body += chunk
    return body


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


def create_app(
    settings: Settings,
    handlers: Sequence[Handler],
    intake: Intake,
    *,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    """Build the receiver's ASGI app; the same object runs on Modal and locally."""

    def check_secret(request: Request) -> None:
        if not settings.secrets:
            log.error(
                "refusing a request with 503: no webhook secret is configured;"
                " set LS_WEBHOOK (Modal secret 'ls-webhook')"
            )
            raise _Rejection(503, "the receiver has no secret configured")
        presented = request.headers.get(SECRET_HEADER) or request.query_params.get(
            SECRET_QUERY_PARAM
        )
        if not secret_matches(presented, settings.secrets):
            raise _Rejection(401, "missing or wrong webhook secret")

    async def receive(request: Request) -> Response:
        check_secret(request)
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
            new = await intake.accept(record, body, payload)
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

    async def index(request: Request) -> Response:
        if request.method == "POST":
            return await receive(request)
        return HTMLResponse(_page(request, handlers, bool(settings.secrets)))

    async def delivery_status(request: Request) -> Response:
        check_secret(request)
        delivery_id = request.path_params["delivery_id"]
        try:
            record = await intake.status(delivery_id)
        except StoreError as exc:
            log.error("delivery=%s status unavailable: %s", delivery_id, exc)
            return _error(503, "the delivery store is unavailable; retry later")
        if record is None:
            return _error(404, f"no delivery {delivery_id}")
        return JSONResponse(record.to_json())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        from receiver.openapi import openapi_document  # built on demand, off the cold path

        return JSONResponse(openapi_document())

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Rejection)
        return _error(exc.status_code, exc.reason)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    return Starlette(
        routes=[
            Route("/", index, methods=["GET", "POST"]),
            Route("/deliveries/{delivery_id}", delivery_status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        exception_handlers={_Rejection: rejected, HTTPException: http_error},
        lifespan=lifespan,
    )
