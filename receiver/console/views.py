"""The console's pages (``/console``) and JSON API (``/api``), added to the receiver's app.

Server-rendered Jinja2 pages, no script: a filter form, counts per status, a chart of the
last day or week (inline SVG), the deliveries newest first, a delivery's page (body,
handlers, links to its runs) and replay, with a confirmation step for a whole selection.
The JSON API offers the same to scripts. Every answer is ``noindex`` and ``no-store``,
under a Content-Security-Policy that allows no script at all; a body is untrusted text and
Jinja2 escapes it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from receiver.console.session import Session, Sessions, csrf_matches
from receiver.delivery import DeliveryRecord, DeliveryStatus
from receiver.replays import Rerun, carry_out, plan_replay
from receiver.routes import RouteTable
from receiver.selection import FILTERS, Selection, hourly, select, select_each
from receiver.settings import Settings
from receiver.stores import DeliveryStore, StoreError

PAGE_SIZE = 50
SHOWN_BODY_CHARS = 64 * 1024  # larger bodies are cut on the page, with a download link
PARSED_BODY_BYTES = 2 * 1024 * 1024  # bodies up to this are parsed for pretty-printing
LISTED_RUNS = 50
MAX_FORM_BYTES = 16 * 1024
WINDOWS = {"day": 24, "week": 24 * 7}
HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class BadRequest(ValueError):
    """A filter or form the console cannot use (the answer says which)."""


class LoginNeeded(Exception):
    """A console page asked for without a session: the answer sends the browser to log in."""


class TokenNeeded(Exception):
    """An API call without the console token: 401."""


# The API's scheme, as OpenAPI documents it; checked by ``require_token``, never the cookie.
bearer = Depends(
    HTTPBearer(
        scheme_name="console-token",
        description="Authorization: Bearer <WEBHOOK_CONSOLE_TOKEN> (the console's own token)",
        auto_error=False,
    )
)


def add_console(
    app: FastAPI, settings: Settings, routes: RouteTable, store: DeliveryStore, rerun: Rerun
) -> None:
    """Add the console and its API to ``app``; without ``WEBHOOK_CONSOLE_TOKEN``, both
    answer 404 (never open)."""
    if settings.console_token is None:

        @app.api_route("/console", methods=["GET"], include_in_schema=False)
        async def console_off() -> Response:
            detail = "the console is off: set WEBHOOK_CONSOLE_TOKEN to turn it on"
            return JSONResponse({"detail": detail}, 404, headers=HEADERS)

        return
    sessions = Sessions(settings)
    web_url = settings.langsmith_web_url

    def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        from receiver.pages import render  # Jinja2 on the first page, not at start-up

        return HTMLResponse(render(f"console/{template}", **values), status, headers=HEADERS)

    def current_session(request: Request) -> Session:
        """The page's session (a dependency); without one, the login page."""
        session = sessions.of(request)
        if session is None:
            raise LoginNeeded
        return session

    logged_in = Depends(current_session)

    async def form_of(request: Request) -> dict[str, str]:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            raise BadRequest("form too large")
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[-1] for name, values in fields.items()}

    async def session_form(request: Request) -> tuple[Session, dict[str, str]]:
        """The session and the form of a state-changing request; a missing or wrong CSRF
        token is a 403 (raised as ``PermissionError``)."""
        session = current_session(request)
        form = await form_of(request)
        if not csrf_matches(session, form.get("csrf")):
            raise PermissionError("missing or wrong CSRF token: reload the page and retry")
        return session, form

    # --- pages -----------------------------------------------------------------------

    @app.get("/console/login", include_in_schema=False)
    async def login_page(request: Request, next: str = "/console") -> Response:
        return page("login.html", next=_safe_next(next), failed=False)

    @app.post("/console/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await form_of(request)
        target = _safe_next(form.get("next", "/console"))
        if not sessions.token_matches(form.get("token")):
            return page("login.html", 401, next=target, failed=True)
        response = RedirectResponse(target, 303, HEADERS)
        sessions.start(request, response)
        return response

    @app.post("/console/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await session_form(request)
        response = RedirectResponse("/console/login", 303, HEADERS)
        sessions.end(request, response)
        return response

    @app.get("/console", include_in_schema=False)
    async def deliveries_page(request: Request, session: Session = logged_in) -> Response:
        query = request.query_params
        selection = _selection(query)
        window = query.get("window") if query.get("window") in WINDOWS else "day"
        number = max(1, _int(query.get("page"), 1))
        in_window = Selection.parse(since=f"{WINDOWS[window]}h", **_without_time(selection))
        found, chart_found = await select_each(store, [selection, in_window])
        pages = max(1, math.ceil(len(found.records) / PAGE_SIZE))
        shown = found.records[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        filters = selection.as_query()
        return page(
            "deliveries.html",
            session=session,
            filters=filters,
            raw={name: query.get(name, "") for name in FILTERS},
            found=found,
            shown=[_row(record) for record in shown],
            page=number,
            pages=pages,
            link=lambda **change: "/console?" + urlencode({**filters, "window": window, **change}),
            statuses=[status.value for status in DeliveryStatus],
            routes=[route.name for route in routes.routes],
            chart=_chart(hourly(chart_found.records, WINDOWS[window])),
            window=window,
            message=query.get("message"),
        )

    @app.get("/console/deliveries/{delivery_id}", include_in_schema=False)
    async def delivery_page(
        request: Request, delivery_id: str, session: Session = logged_in
    ) -> Response:
        record = await store.get(delivery_id)
        if record is None:
            return page("missing.html", 404, session=session, delivery_id=delivery_id)
        body = await store.body(delivery_id)
        parsed = _parsed(body)  # once, for the page and the run links
        shown, cut = _pretty(body, parsed)
        return page(
            "delivery.html",
            session=session,
            record=_row(record),
            handlers=[(name, _state(state)) for name, state in record.handlers.items()],
            body=shown,
            cut=cut,
            size=len(body),
            runs=_run_links(parsed, web_url),
            message=request.query_params.get("message"),
        )

    @app.get("/console/deliveries/{delivery_id}/body", include_in_schema=False)
    async def body_download(delivery_id: str, session: Session = logged_in) -> Response:
        return await _body_response(store, delivery_id)

    @app.get("/console/replay", include_in_schema=False)
    async def replay_confirmation(request: Request, session: Session = logged_in) -> Response:
        query = request.query_params
        selection = _selection(query)
        include_done = query.get("include_done") == "1"
        found = await select(store, selection)
        plan = plan_replay(found.records, include_done=include_done)
        return page(
            "replay.html",
            session=session,
            filters=selection.as_query(),
            include_done=include_done,
            plan=plan,
            found=found,
        )

    @app.post("/console/replay", include_in_schema=False)
    async def replay(request: Request) -> Response:
        _, form = await session_form(request)
        delivery_id = form.get("id")
        if delivery_id:
            record = await store.get(delivery_id)
            if record is None:
                raise BadRequest(f"no delivery {delivery_id}")
            handler = form.get("handler") or None
            plan = plan_replay([record], include_done=True, handler=handler)
            started = await carry_out(store, plan, rerun)
            message = f"replaying {plan.handlers} handler(s)" if started else "nothing to replay"
            target = f"/console/deliveries/{delivery_id}?{urlencode({'message': message})}"
            return RedirectResponse(target, 303, HEADERS)
        selection = _selection(form)
        found = await select(store, selection)
        plan = plan_replay(found.records, include_done=form.get("include_done") == "1")
        started = await carry_out(store, plan, rerun)
        message = f"replaying {len(started)} deliveries ({plan.handlers} handlers)"
        query = urlencode({**selection.as_query(), "message": message})
        return RedirectResponse(f"/console?{query}", 303, HEADERS)

    # --- the JSON API ------------------------------------------------------------------

    def require_token(credentials: HTTPAuthorizationCredentials | None = bearer) -> None:
        """The API's credential (a dependency, which also documents it in OpenAPI)."""
        if credentials is None or not sessions.token_matches(credentials.credentials):
            raise TokenNeeded

    token_needed = [Depends(require_token)]

    @app.get(
        "/api/deliveries",
        summary="Deliveries, newest first, filtered",
        tags=["console"],
        dependencies=token_needed,
    )
    async def api_deliveries(
        status: str | None = None,
        source: str | None = None,
        route: str | None = None,
        rule: str | None = None,
        run: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> Response:
        """Filters as on the console (``since``/``until``: ISO-8601 or a duration ago such
        as ``2h``). ``counts`` are per status; ``truncated`` says older ones were unread."""
        filters = (status, source, route, rule, run, since, until)
        selection = _selection(dict(zip(FILTERS, filters, strict=True)))
        found = await select(store, selection)
        limit, offset = min(max(limit, 1), 1000), max(offset, 0)
        return JSONResponse(
            {
                "deliveries": [r.to_json() for r in found.records[offset : offset + limit]],
                "total": len(found.records),
                "counts": dict(found.counts),
                "scanned": found.scanned,
                "truncated": found.truncated,
            },
            headers=HEADERS,
        )

    @app.get(
        "/api/deliveries/{delivery_id}",
        summary="One delivery",
        tags=["console"],
        dependencies=token_needed,
    )
    async def api_delivery(delivery_id: str) -> Response:
        record = await store.get(delivery_id)
        if record is None:
            return JSONResponse({"detail": f"no delivery {delivery_id}"}, 404, headers=HEADERS)
        body_url = f"/api/deliveries/{delivery_id}/body"
        return JSONResponse({**record.to_json(), "body_url": body_url}, headers=HEADERS)

    @app.get(
        "/api/deliveries/{delivery_id}/body",
        summary="A delivery's body",
        tags=["console"],
        dependencies=token_needed,
    )
    async def api_body(delivery_id: str) -> Response:
        return await _body_response(store, delivery_id)

    @app.post(
        "/api/replay", summary="Replay deliveries", tags=["console"], dependencies=token_needed
    )
    async def api_replay(request: Request) -> Response:
        """Body: ``{"ids": [...]}`` or filters (as ``/api/deliveries``), with
        ``include_done`` (run succeeded handlers again), ``handler`` (only this one) and
        ``dry_run`` (count, change nothing)."""
        try:
            asked = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(asked, dict):
            raise BadRequest("the body must be a JSON object")
        if asked.get("ids"):
            ids = [str(each) for each in asked["ids"]][:1000]
            records = [record for each in ids if (record := await store.get(each)) is not None]
        else:
            filters = {name: str(asked[name]) for name in FILTERS if asked.get(name)}
            records = (await select(store, _selection(filters))).records
        plan = plan_replay(
            records, include_done=bool(asked.get("include_done")), handler=asked.get("handler")
        )
        started = [] if asked.get("dry_run") else await carry_out(store, plan, rerun)
        return JSONResponse(
            {
                "deliveries": plan.deliveries,
                "handlers": plan.handlers,
                "dry_run": bool(asked.get("dry_run")),
                "replayed": started,
                "plan": {delivery_id: list(names) for delivery_id, names in plan.items},
            },
            headers=HEADERS,
        )

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return JSONResponse({"detail": str(exc)}, 422, headers=HEADERS)

    @app.exception_handler(TokenNeeded)
    async def unauthorized(request: Request, exc: TokenNeeded) -> Response:
        return JSONResponse(
            {"detail": "send Authorization: Bearer <WEBHOOK_CONSOLE_TOKEN>"},
            401,
            headers={**HEADERS, "WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(LoginNeeded)
    async def to_login(request: Request, exc: LoginNeeded) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?{urlencode({'next': target})}", 303, HEADERS)

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError) -> Response:
        return JSONResponse({"detail": str(exc)}, 403, headers=HEADERS)


def _selection(values: Any) -> Selection:
    """The filters of a query or form; a bad one is a 422 naming it."""
    try:
        return Selection.parse(**{name: values.get(name) for name in FILTERS})
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _safe_next(target: str) -> str:
    """Where to go after logging in: a console path only (never another site)."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _without_time(selection: Selection) -> dict[str, str]:
    return {k: v for k, v in selection.as_query().items() if k not in ("since", "until")}


def _when(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "received": _when(record.received_at),
        "source": record.source,
        "subject": record.subject,
        "runs": record.runs,
        "routes": ", ".join(record.routes) or "-",
        "status": record.status.value,
        "handlers": ", ".join(f"{name} ({s.status.value})" for name, s in record.handlers.items()),
    }


def _state(state: Any) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "attempts": state.attempts,
        "finished": _when(state.finished_at),
        "error": state.last_error or "",
        "failures": [(f["attempt"], _when(f["at"]), f["error"]) for f in state.failures],
    }


def _parsed(body: bytes) -> Any:
    """The body as JSON, or None when it is too large to parse for a page, or not JSON."""
    if len(body) > PARSED_BODY_BYTES:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _pretty(body: bytes, parsed: Any) -> tuple[str, bool]:
    """The body as indented JSON when it parsed, else as text; cut for the page."""
    if parsed is None:
        text = body[: SHOWN_BODY_CHARS * 4].decode("utf-8", "replace")
    else:
        text = json.dumps(parsed, indent=2, ensure_ascii=False)
    return text[:SHOWN_BODY_CHARS], len(text) > SHOWN_BODY_CHARS


def _run_links(parsed: Any, web_url: str) -> list[tuple[str, str | None]]:
    """(run name or id, its LangSmith URL) for the runs of a rule delivery."""
    runs = parsed.get("runs") if isinstance(parsed, dict) else None
    links = []
    for run in runs if isinstance(runs, list) else []:
        if isinstance(run, dict):
            path = run.get("app_path")
            url = f"{web_url}{path}" if isinstance(path, str) and path.startswith("/") else None
            links.append((str(run.get("name") or run.get("id")), url))
        if len(links) >= LISTED_RUNS:
            break
    return links


def _chart(hours: list[tuple[float, Any]]) -> dict[str, Any]:
    """Stacked bars (done, pending, dead) per hour, in SVG coordinates."""
    width, height, gap = 720, 120, 1
    bar = width / max(len(hours), 1)
    peak = max((sum(counts.values()) for _, counts in hours), default=0) or 1
    bars = []
    for n, (start, counts) in enumerate(hours):
        y = height
        for status in ("done", "pending", "dead"):
            h = counts.get(status, 0) / peak * height
            if h:
                y -= h
                title = f"{_when(start)[:13]}h: {counts.get(status, 0)} {status}"
                bars.append(
                    {"x": n * bar, "y": y, "w": max(bar - gap, 1), "h": h, "s": status, "t": title}
                )
    return {"width": width, "height": height, "bars": bars, "peak": peak, "hours": len(hours)}


async def _body_response(store: DeliveryStore, delivery_id: str) -> Response:
    try:
        body = await store.body(delivery_id)
    except StoreError:
        return JSONResponse({"detail": f"no delivery {delivery_id}"}, 404, headers=HEADERS)
    disposition = f'attachment; filename="delivery-{delivery_id}.json"'
    return Response(
        body,
        media_type="application/octet-stream",
        headers={**HEADERS, "Content-Disposition": disposition},
    )
