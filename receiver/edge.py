"""The HTTP edge: one FastAPI app, served by Modal's web function and by the local server.

Each route path (``/`` unless a routes file says more) takes a ``POST``: the credential is
checked (a dependency: the shared secret, or LangSmith's signature), the body is read by
the edge itself (streamed, bounded, kept as received bytes: FastAPI's body handling would
parse it first and could do neither), its sender is recognised and the little the answer
needs validated, the delivery is made durable through an :class:`Intake` with the handlers
of every route it matches, and ``202`` goes out without waiting for any handler.

=====  ============================================================================
code   when
=====  ============================================================================
202    accepted (or a redelivery of one already accepted: handlers do not rerun),
       with the routes it matched (possibly none: it is recorded all the same)
401    credential missing or wrong (nothing is read beyond the headers; the
       connection is closed, as after every refusal made before the body), signature
       not matching the body, or an unsigned LangSmith event when signing secrets
       are configured
413    body larger than ``WEBHOOK_MAX_BODY_BYTES`` (the rest is not read)
422    body is not a JSON object (any object is kept: as its sender's, or ``unknown``)
503    no credential configured (never open by default), or the delivery could not
       be recorded within ``WEBHOOK_ACK_DEADLINE_SECONDS``: LangSmith retries 5xx
       answers (a delivery recorded after the deadline is then a duplicate)
=====  ============================================================================

The OpenAPI document (``/openapi.json``, ``/docs``) is generated from these routes.

    app = create_app(settings, load_routes(settings, SOURCES), intake)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from receiver.auth import (
    SECRET_HEADER,
    SECRET_QUERY_PARAM,
    SIGNATURE_HEADER,
    TOKEN_QUERY_PARAM,
    secret_matches,
    signature_matches,
)
from receiver.delivery import DeliveryRecord, HandlerState
from receiver.reading import ParserProcess, Reader
from receiver.routes import RouteTable
from receiver.settings import Settings
from receiver.sources import SOURCES, BodyError
from receiver.stores import Body, StoreError, TooLarge

log = logging.getLogger("receiver.http")
PARSE_INLINE_BYTES = 1024 * 1024  # read on the event loop (up to ~4 ms); larger, by the parser
HEALTH_CHECK_SECONDS = 2.0  # /healthz probes the store at most this often (it is public)


class Intake(Protocol):
    """Where the edge puts accepted deliveries: the port each runtime implements."""

    async def accept(self, record: DeliveryRecord, body: Body, deadline: float) -> bool:
        """Make the delivery durable and schedule its handlers; False if already accepted.

        Raises :class:`~receiver.stores.StoreError` when it cannot be recorded, and
        :class:`TimeoutError` when it is not known to be recorded by ``deadline`` (the event
        loop's clock): the delivery may still be recorded, and is then processed.
        """
        ...

    async def status(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery's current record, or None if unknown."""
        ...

    async def check(self) -> None:
        """Raise :class:`~receiver.stores.StoreError` if a delivery could not be recorded
        now (``/healthz``)."""
        ...


class Accepted(BaseModel):
    """The ``202`` answer."""

    delivery_id: str
    duplicate: bool
    source: str
    routes: list[str]


class Refused(BaseModel):
    """Any error answer: a short reason, never an echo of a secret."""

    error: str


class Status(BaseModel):
    """``/healthz``'s answer: ``ok``, or ``unavailable`` with what is wrong."""

    status: str
    problem: str | None = None


class Rejection(Exception):
    """A request the edge refuses, with its status code and a short reason."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@dataclass
class _Health:
    """The last probe of the store, shared by ``/healthz`` answers for a couple of seconds."""

    checked_at: float = float("-inf")
    problem: str | None = None


@dataclass(frozen=True)
class Credential:
    """How a request proved itself: a signature still to check against the body, or the
    shared secret (already checked)."""

    signature: str | None = None


def _error(status_code: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status_code, headers=headers)


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, refusing with 413 as soon as it is known to exceed ``limit`` bytes.

    Chunks are appended to one ``bytearray`` (no list of chunks joined into a second copy):
    a 25 MB body costs 25 MB here, not 50.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejection(413, f"body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise Rejection(413, f"body is over the {limit}-byte limit")
            body += chunk
    except ClientDisconnect:
        # LangSmith gives up on a slow upload after 5 s: a line, not a traceback (nobody is
        # left to answer; the sender retries or not, as it would after a timeout).
        log.warning("delivery not received: the sender went away after %d bytes", len(body))
        raise Rejection(400, "the sender disconnected before the body was complete") from None
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


# Where a sender may put its credential, as OpenAPI security schemes (any one will do). They
# document the credential; :func:`create_app`'s one dependency reads all of them at once,
# which costs a fraction of four dependencies solved per request.
SECRET_IN_HEADER = APIKeyHeader(
    name=SECRET_HEADER,
    scheme_name="secret-header",
    description="The webhook secret (LS_WEBHOOK), in a header set on the webhook.",
)
SECRET_IN_QUERY = APIKeyQuery(
    name=SECRET_QUERY_PARAM,
    scheme_name="secret-query",
    description="The webhook secret in the URL, LangSmith's documented form for rules.",
)
SECRET_AS_TOKEN = APIKeyQuery(
    name=TOKEN_QUERY_PARAM,
    scheme_name="token-query",
    description="The webhook secret in the URL, Agent Server's documented form.",
)
SIGNATURE = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="langsmith-signature",
    description="sha256=<hex HMAC-SHA256 of the raw body> under a signing secret"
    " (LS_SIGNING_SECRETS): how LangSmith signs Engine and Context Hub events.",
)
SECRET_SCHEMES = (SECRET_IN_HEADER, SECRET_IN_QUERY, SECRET_AS_TOKEN)


def _security(*schemes: APIKeyHeader | APIKeyQuery) -> dict[str, Any]:
    """``openapi_extra`` naming ``schemes`` as alternatives for an operation."""
    return {"security": [{scheme.scheme_name: []} for scheme in schemes]}


# Answers are documented by reference to schemas the ``openapi()`` override adds, never with
# ``response_model`` or typed path parameters: for those FastAPI builds a field per route,
# whose check for pydantic.v1 models imports ``pydantic.v1`` (60-100 ms of every cold start).
ANSWER_MODELS = (Accepted, Refused, Status)


def _answer(description: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        401: "credential missing or wrong, or signature not matching the body",
        404: "no such delivery",
        413: "body over WEBHOOK_MAX_BODY_BYTES",
        422: "body is not a JSON object",
        503: "no credential configured, or the store is unavailable: retry later",
    }
    return {code: _answer(reasons[code], Refused) for code in codes}


def _request_body(path: str, sources: tuple[str, ...]) -> dict[str, Any]:
    """The body as documented: the event of any sender (the edge reads it, not FastAPI)."""
    models = [SOURCES[name].event.__name__ for name in SOURCES]
    return {
        "requestBody": {
            "required": True,
            "description": f"What a LangSmith sender POSTs; routes at {path} take"
            f" {', '.join(sources)}, any other sender's body is recorded all the same.",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [{"$ref": f"#/components/schemas/{m}"} for m in models]}
                }
            },
        }
    }


def create_app(
    settings: Settings,
    routes: RouteTable,
    intake: Intake,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the receiver's ASGI app; the same object runs on Modal and locally.

    At start-up the app starts its parser process in the background (the first large body
    would otherwise wait for it: a quarter of a second), then runs ``lifespan``, if given.
    """
    parser = ParserProcess(settings)

    @asynccontextmanager
    async def starting(app: FastAPI) -> AsyncIterator[None]:
        parser.start()
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(
        title="LangSmith webhook receiver",
        summary="Acknowledges LangSmith webhook deliveries fast; handlers run afterwards.",
        version="1",
        lifespan=starting,
        redoc_url=None,
    )
    secrets = settings.secret_values
    signing_secrets = settings.signing_secret_values
    health = _Health()

    async def require_credential(request: Request) -> Credential:
        """A signature (checked once the body is read) or the shared secret, from the
        header, else the query; constant-time, several secrets accepted."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if signature is not None and signing_secrets:
            return Credential(signature)
        if not secrets and not signing_secrets:
            log.error(
                "refusing a request with 503: no webhook secret is configured;"
                " set LS_WEBHOOK (Modal secret 'ls-webhook')"
            )
            raise Rejection(503, "the receiver has no secret configured")
        query = request.query_params
        presented = (
            request.headers.get(SECRET_HEADER)
            or query.get(SECRET_QUERY_PARAM)
            or query.get(TOKEN_QUERY_PARAM)
        )
        if not secret_matches(presented, secrets):
            raise Rejection(401, "missing or wrong webhook secret")
        return Credential()

    # The dependency is a closure over the settings: passed as a default value, since a
    # string annotation (``from __future__ import annotations``) cannot name a local.
    credential_dependency = Depends(require_credential)

    async def require_secret(credential: Credential = credential_dependency) -> None:
        """Reading deliveries takes the shared secret: a signature covers one body only."""
        if credential.signature is not None:
            raise Rejection(401, "missing or wrong webhook secret")

    reader = Reader(routes)

    def receiver_for(path: str) -> Callable[..., Any]:
        async def receive(
            request: Request, credential: Credential = credential_dependency
        ) -> Response:
            body = await read_body(request, settings.max_body_bytes)
            signed = credential.signature is not None
            if signed and not signature_matches(body, credential.signature, signing_secrets):
                return _error(401, f"{SIGNATURE_HEADER} does not match the body")
            try:
                if len(body) <= PARSE_INLINE_BYTES:
                    delivery = reader.read(path, body)
                else:  # milliseconds to seconds of parsing: the loop keeps serving meanwhile
                    delivery = await parser.read(path, body)
            except BodyError as exc:
                return _error(422, str(exc))
            except RuntimeError as exc:
                log.error("delivery not read, answering 503: %s", exc)
                return _error(503, "the delivery could not be read; retry later")
            if delivery.key is not None and signing_secrets and not signed:
                return _error(401, f"a LangSmith event must carry a valid {SIGNATURE_HEADER}")
            record = DeliveryRecord(
                id=delivery.id,
                received_at=time.time(),
                source=delivery.source,
                subject=delivery.subject,
                runs=delivery.runs,
                routes=delivery.routes,
                handlers={name: HandlerState() for name in delivery.handlers},
            )
            deadline = asyncio.get_running_loop().time() + settings.ack_deadline_seconds
            try:
                new = await intake.accept(record, body, deadline)
            except TooLarge as exc:
                log.error("delivery=%s refused, answering 413: %s", record.id, exc)
                return _error(413, "the body is larger than the delivery store takes")
            except (StoreError, TimeoutError) as exc:
                reason = str(exc) or f"not recorded within {settings.ack_deadline_seconds} s"
                log.error("delivery=%s not recorded, answering 503: %s", record.id, reason)
                return _error(503, "the delivery could not be recorded; retry later")
            log.info(
                "delivery=%s %s source=%s %s runs=%d routes=%s",
                record.id,
                "accepted" if new else "duplicate",
                record.source,
                record.subject,
                record.runs,
                ",".join(record.routes) or "-",
            )
            return JSONResponse(
                {
                    "delivery_id": record.id,
                    "duplicate": not new,
                    "source": record.source,
                    "routes": list(record.routes),
                },
                status_code=202,
            )

        return receive

    for path in routes.paths:
        app.add_api_route(
            path,
            receiver_for(path),
            methods=["POST"],
            status_code=202,
            response_model=None,
            responses={202: _answer("accepted", Accepted), **_responses(401, 413, 422, 503)},
            openapi_extra={
                **_request_body(path, routes.sources_at(path)),
                **_security(*SECRET_SCHEMES, SIGNATURE),
            },
            summary=f"Receive a delivery at {path}",
            name=f"receive {path}",
        )

    @app.get("/", response_class=HTMLResponse, summary="How to point LangSmith here")
    async def index(request: Request) -> Response:
        from receiver.pages import render  # Jinja2 is loaded on the first page, not at start

        return HTMLResponse(
            render(
                "index.html",
                url=str(request.base_url).rstrip("/"),
                routes=routes.routes,
                configured=bool(secrets or signing_secrets),
                header=SECRET_HEADER,
                param=SECRET_QUERY_PARAM,
            )
        )

    @app.get(
        "/deliveries/{delivery_id}",
        response_model=None,
        responses={200: {"description": "the delivery's record"}, **_responses(401, 404, 503)},
        dependencies=[Depends(require_secret)],
        openapi_extra={
            **_security(*SECRET_SCHEMES),
            "parameters": [
                {
                    "name": "delivery_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
        },
        summary="A delivery's status, handler by handler",
    )
    async def delivery_status(request: Request) -> Response:
        delivery_id = request.path_params["delivery_id"]
        try:
            record = await intake.status(delivery_id)
        except StoreError as exc:
            log.error("delivery=%s status unavailable: %s", delivery_id, exc)
            return _error(503, "the delivery store is unavailable; retry later")
        if record is None:
            return _error(404, f"no delivery {delivery_id}")
        return JSONResponse(record.to_json())

    @app.get(
        "/healthz",
        response_model=None,
        responses={
            200: _answer("alive, and the store can record deliveries", Status),
            503: _answer("the store cannot record deliveries (what is wrong is said)", Status),
        },
        summary="Health: no secret needed",
    )
    async def healthz() -> Response:
        now = time.monotonic()
        if now - health.checked_at > HEALTH_CHECK_SECONDS:
            health.checked_at = now
            try:
                await intake.check()
                health.problem = None
            except StoreError as exc:
                health.problem = str(exc)
                log.error("healthz: the delivery store cannot record deliveries: %s", exc)
        if health.problem is not None:
            return JSONResponse({"status": "unavailable", "problem": health.problem}, 503)
        return JSONResponse({"status": "ok"})

    @app.exception_handler(Rejection)
    async def rejected(request: Request, exc: Rejection) -> Response:
        # Refused before the body was read (or while): answer and close, rather than keep
        # the connection and read up to the rest of a body nobody will look at.
        return _error(exc.status_code, exc.reason, {"Connection": "close"})

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
        """FastAPI's generated document, plus the senders' models (read by the edge)."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(  # beside the console's
                {
                    scheme.scheme_name: scheme.model.model_dump(
                        mode="json", by_alias=True, exclude_none=True
                    )
                    for scheme in (*SECRET_SCHEMES, SIGNATURE)
                }
            )
            models = components.setdefault("schemas", {})
            for model in ANSWER_MODELS:
                models[model.__name__] = model.model_json_schema()
            for source in SOURCES.values():
                event = source.event.model_json_schema(ref_template="#/components/schemas/{model}")
                models.update(event.pop("$defs", {}))
                models[source.event.__name__] = event
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
