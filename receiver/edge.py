"""The HTTP edge: one FastAPI app, served by Modal's web function and by the local server.

``POST /`` checks the secret (a dependency), reads the body itself (streamed, bounded,
hashed as received bytes: FastAPI's body handling would parse it first and could not do
either), validates the little the answer needs, makes the delivery durable through an
:class:`Intake`, and answers ``202`` without waiting for any handler.

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

The OpenAPI document (``/openapi.json``, ``/docs``) is generated from these routes.

    app = create_app(settings, ["handlers.log_runs"], intake)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from receiver.auth import SECRET_HEADER, SECRET_QUERY_PARAM, secret_matches
from receiver.delivery import DeliveryRecord, HandlerState, derive_delivery_id
from receiver.settings import Settings
from receiver.sources import RuleEnvelope, RulePayload
from receiver.stores import Body, StoreError

log = logging.getLogger("receiver.http")


class Intake(Protocol):
    """Where the edge puts accepted deliveries: the port each runtime implements."""

    async def accept(self, record: DeliveryRecord, body: Body) -> bool:
        """Make the delivery durable and schedule its handlers; False if already accepted.

        Raises :class:`~receiver.stores.StoreError` when it cannot be recorded.
        """
        ...

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery's current record, or None if unknown."""
        ...


class Accepted(BaseModel):
    """The ``202`` answer."""

    delivery_id: str
    duplicate: bool


class Refused(BaseModel):
    """Any error answer: a short reason, never an echo of the secret."""

    error: str


class Rejection(Exception):
    """A request the edge refuses, with its status code and a short reason."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def _error(status_code: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status_code, headers=headers)


def validation_reason(exc: ValidationError, limit: int = 3) -> str:
    """A short, readable summary of what is wrong with the body."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    Chunks are appended to one ``bytearray`` (no list of chunks joined into a second copy):
    a 25 MB body costs 25 MB here, not 50.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejection(413, f"body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise Rejection(413, f"body is over the {limit}-byte limit")
        body += chunk
    return body


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path`` (several routes may share it)."""
    methods = {
        method
        for route in app.routes
        if isinstance(route, APIRoute) and route.path_regex.match(path)
        for method in route.methods
    }
    return sorted(methods)


# The two places a sender may put the secret, as OpenAPI security schemes (either one will do;
# read straight from the request, without a per-request validation of parameters).
SECRET_IN_HEADER = APIKeyHeader(
    name=SECRET_HEADER,
    scheme_name="secret-header",
    description="The webhook secret (LS_WEBHOOK), in a header set on the rule's webhook.",
    auto_error=False,
)
SECRET_IN_QUERY = APIKeyQuery(
    name=SECRET_QUERY_PARAM,
    scheme_name="secret-query",
    description="The webhook secret in the URL, LangSmith's documented form.",
    auto_error=False,
)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        401: "secret missing or wrong",
        404: "no such delivery",
        413: "body over WEBHOOK_MAX_BODY_BYTES",
        422: "body is not JSON or not a LangSmith rule payload",
        503: "no secret configured, or the store is unavailable: retry later",
    }
    return {code: {"model": Refused, "description": reasons[code]} for code in codes}


_BODY = {
    "requestBody": {
        "required": True,
        "description": "The JSON a LangSmith automation rule's webhook action POSTs.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RulePayload"}}},
    }
}


def create_app(
    settings: Settings,
    handler_names: Sequence[str],
    intake: Intake,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the receiver's ASGI app; the same object runs on Modal and locally."""
    app = FastAPI(
        title="LangSmith webhook receiver",
        summary="Acknowledges LangSmith webhook deliveries fast; handlers run afterwards.",
        version="1",
        lifespan=lifespan,
        redoc_url=None,
    )
    secrets = settings.secret_values

    async def require_secret(
        header: Annotated[str | None, Security(SECRET_IN_HEADER)],
        query: Annotated[str | None, Security(SECRET_IN_QUERY)],
    ) -> None:
        """The secret, from the header or else the query; constant-time, several accepted."""
        if not secrets:
            log.error(
                "refusing a request with 503: no webhook secret is configured;"
                " set LS_WEBHOOK (Modal secret 'ls-webhook')"
            )
            raise Rejection(503, "the receiver has no secret configured")
        if not secret_matches(header or query, secrets):
            raise Rejection(401, "missing or wrong webhook secret")

    authenticated = [Depends(require_secret)]

    @app.post(
        "/",
        status_code=202,
        response_model=Accepted,
        responses=_responses(401, 413, 422, 503),
        dependencies=authenticated,
        openapi_extra=_BODY,
        summary="Receive a delivery",
    )
    async def receive(request: Request) -> Response:
        body = await read_body(request, settings.max_body_bytes)
        try:
            envelope = RuleEnvelope.model_validate_json(body)
        except ValidationError as exc:
            return _error(422, validation_reason(exc))
        record = DeliveryRecord(
            id=derive_delivery_id(body),
            received_at=time.time(),
            rule_id=str(envelope.rule_id),
            runs=len(envelope.runs),
            handlers={name: HandlerState() for name in handler_names},
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

    @app.get("/", response_class=HTMLResponse, summary="How to point LangSmith here")
    async def index(request: Request) -> Response:
        from receiver.pages import render  # Jinja2 is loaded on the first page, not at start

        return HTMLResponse(
            render(
                "index.html",
                url=str(request.base_url),
                handlers=handler_names,
                configured=bool(secrets),
                header=SECRET_HEADER,
                param=SECRET_QUERY_PARAM,
            )
        )

    @app.get(
        "/deliveries/{delivery_id}",
        responses=_responses(401, 404, 503),
        dependencies=authenticated,
        summary="A delivery's status, handler by handler",
    )
    async def delivery_status(delivery_id: str) -> Response:
        try:
            record = await intake.status(delivery_id)
        except StoreError as exc:
            log.error("delivery=%s status unavailable: %s", delivery_id, exc)
            return _error(503, "the delivery store is unavailable; retry later")
        if record is None:
            return _error(404, f"no delivery {delivery_id}")
        return JSONResponse(record.to_json())

    @app.get("/healthz", summary="Liveness: no secret needed")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(Rejection)
    async def rejected(request: Request, exc: Rejection) -> Response:
        return _error(exc.status_code, exc.reason)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names only the first route's methods
            headers = {"Allow": ", ".join(allowed_methods(app, request.url.path))}
        return _error(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, "; ".join(str(error.get("msg")) for error in exc.errors()[:3]))

    def openapi() -> dict[str, Any]:
        """FastAPI's generated document, plus the body's models (read by the edge, not FastAPI)."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            body = RulePayload.model_json_schema(ref_template="#/components/schemas/{model}")
            models = schema.setdefault("components", {}).setdefault("schemas", {})
            models.update(body.pop("$defs", {}))
            models["RulePayload"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
