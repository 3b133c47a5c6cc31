"""A local emulation of the parts of the LangSmith HTTP API this project uses.

Paths and bodies follow what the installed ``langsmith`` SDK sends (``langsmith/client.py``):
``GET /info``; datasets (``GET /datasets?name=``, ``GET /datasets/{id}``, ``POST /datasets``
with 409 on a taken name; ``GET /sessions`` which the SDK reads once per client); examples
(JSON ``POST /examples/bulk``, where one existing id fails the whole request with 409 and
stores nothing; ``POST /examples`` for one; ``GET /examples?id=&dataset=`` with offset
paging); feedback
(``GET /feedback?run=&key=`` with offset paging, ``POST /feedback`` with the client's id,
409 when it exists, ``PATCH /feedback/{id}``); automation rules
(``GET /api/v2/runs/rules`` with cursor pages, the deprecated ``GET /runs/rules``,
``PATCH /runs/rules/{id}``, ``POST /runs/rules/{id}/trigger``, also
under ``/api/v1``); runs (``GET /runs/{id}``, what ``read_run`` asks); and presigned blobs
(``GET /blobs/{name}``, 403 once expired, like S3, or a redirect).

As strict as LangSmith where the project's code could go wrong: every API route wants
``x-api-key`` (an organization-scoped key also ``X-Tenant-Id``), ids must be UUIDs, a
request over 20 MB or a URL over 8 KiB is refused, a rule update replaces the rule
(required fields, defaults for the others), an example update names existing examples only.

Tests inject latency (``emulator.latency``), failures (``emulator.fail(...)``, before the
work or after it: "committed, then answered 5xx") and read the request log
(``emulator.requests``).

    with running_emulator() as emulator:
        client = langsmith.Client(api_url=emulator.url, api_key="test", auto_batch_tracing=False)
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from support.live_server import uvicorn_in_thread

API_PREFIXES = ("", "/api/v1")
# A rule update (PATCH /runs/rules/{id}) takes LangSmith's create schema and *replaces* the
# rule: a field not sent takes its default. Required fields, then the defaults of the others.
RULE_REQUIRED = ("display_name", "sampling_rate")
RULE_DEFAULTS = {
    "session_id": None, "is_enabled": True, "dataset_id": None, "filter": None,
    "trace_filter": None, "tree_filter": None, "backfill_from": None,
    "use_corrections_dataset": False, "num_few_shot_examples": None, "extend_only": False,
    "transient": False, "add_to_annotation_queue_id": None, "add_to_dataset_id": None,
    "add_to_dataset_prefer_correction": False, "evaluators": None, "code_evaluators": None,
    "evaluator_id": None, "alerts": None, "webhooks": None, "evaluator_version": None,
    "include_extended_stats": False, "group_by": None, "spend_limit": None,
}  # fmt: skip
UNAUTHENTICATED = ("/blobs/", "/public/download", "/_admin/")  # signed URLs; test admin
# LangSmith's front proxy refuses a longer request line (nginx's default buffer) with 414.
MAX_URL_BYTES = 8192
MAX_REQUEST_BYTES = 20_000_000  # what the SDK batches examples under; larger is refused


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Failure:
    """Answer ``status`` to the next ``times`` requests whose path starts with ``path``:
    before doing anything, or, with ``after_work``, once the request has taken effect (a
    server that committed, then failed to answer: the SDK's re-send meets a 409)."""

    path: str
    status: int
    times: int
    retry_after: str | None = None
    after_work: bool = False


@dataclass
class Emulator:
    """The emulated LangSmith's state, readable and adjustable by tests."""

    url: str = ""
    latency: float = 0.0
    datasets: dict[str, dict] = field(default_factory=dict)
    examples: dict[str, dict] = field(default_factory=dict)
    feedback: list[dict] = field(default_factory=list)
    blobs: dict[str, Any] = field(default_factory=dict)
    expired_blobs: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)  # blob name -> Location
    runs: dict[str, dict] = field(default_factory=dict)  # what GET /runs/{id} finds
    rules: dict[str, dict] = field(default_factory=dict)
    triggered: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # Organization-scoped API keys, by the workspace they may act in: LangSmith refuses
    # such a key without that workspace's X-Tenant-Id header.
    org_keys: dict[str, str] = field(default_factory=dict)
    rule_fields_ignored: set[str] = field(default_factory=set)  # an older update schema
    # LangSmith's /info advertises the multipart examples endpoint; the SDK then writes
    # examples there (multipart POST/PATCH /v1/platform/datasets/{id}/examples), not as JSON.
    multipart: bool = False
    # GET /api/v2/runs/rules (cursor pages); an older self-hosted instance has only v1.
    rules_v2: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- what tests call -------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """The URL to give ``langsmith.Client(api_url=...)`` or ``LANGSMITH_ENDPOINT``."""
        return self.url.rstrip("/")

    def fail(
        self,
        path: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        *,
        after_work: bool = False,
    ) -> None:
        """Make the next ``times`` requests under ``path`` answer ``status``."""
        self.failures.append(Failure(path, status, times, retry_after, after_work))

    def add_feedback(self, run_id: Any, key: str, **fields: Any) -> dict:
        """Store one feedback on ``run_id``; ``created_at`` defaults to now."""
        created = fields.pop("created_at", _now())
        item = {
            "id": str(uuid.uuid4()),
            "run_id": str(run_id) if run_id else None,
            "trace_id": str(run_id) if run_id else None,
            "key": key,
            "score": None,
            "value": None,
            "comment": None,
            "correction": None,
            "created_at": created,
            "modified_at": fields.pop("modified_at", created),
            **fields,
        }
        self.feedback.append(item)
        return item

    def add_blob(
        self, name: str, content: Any, *, expired: bool = False, relative: bool = False
    ) -> str:
        """Store a JSON blob and return its presigned URL: absolute as LangSmith cloud's
        (S3-style), or ``relative`` as self-hosted LangSmith's."""
        self.blobs[name] = content
        if expired:
            self.expired_blobs.add(name)
        if relative:
            return f"/api/v1/public/download?jwt={name}"
        return f"{self.url}blobs/{name}?X-Amz-Expires=3600&X-Amz-Signature=test"

    def add_redirect(self, name: str, location: str) -> str:
        """A presigned URL on this host that redirects to ``location``."""
        self.redirects[name] = location
        return f"{self.url}blobs/{name}"

    def add_run(self, run: dict) -> None:
        """Store a run (a rule payload's run dict) where ``read_run`` finds it."""
        self.runs[str(run["id"])] = run

    def add_rule(self, name: str, webhooks: list[dict] | None = None, **fields: Any) -> dict:
        """Store an automation rule with the given webhooks (and any other ``fields``)."""
        rule = {
            **RULE_DEFAULTS,
            "id": str(uuid.uuid4()),
            "display_name": name,
            "session_id": str(uuid.uuid4()),
            "sampling_rate": 1.0,
            "filter": "eq(is_root, true)",
            "webhooks": webhooks or [],
            "created_at": _now(),
            "updated_at": _now(),
            **fields,
        }
        self.rules[rule["id"]] = rule
        return rule

    def calls(
        self, method: str | None = None, path: str | None = None
    ) -> list[tuple[str, str, str]]:
        """Logged requests, optionally only those of ``method`` and path prefix ``path``."""
        return [
            call
            for call in self.requests
            if (method is None or call[0] == method) and (path is None or call[1].startswith(path))
        ]

    @property
    def example_write_path(self) -> str:
        """Where the SDK writes examples to this emulator (a path prefix, for ``fail``)."""
        return "/v1/platform/datasets/" if self.multipart else "/examples/bulk"

    def example_writes(self, method: str) -> list[tuple[str, str, str]]:
        """Requests that create (POST) or update (PATCH) examples, on either write path."""
        return [
            call
            for call in self.calls(method)
            if call[1] == "/examples/bulk"
            or (call[1].endswith(("/examples",)) and "/platform/datasets/" in call[1])
        ]

    def write_examples(self, examples: dict[str, dict], *, creating: bool) -> Response | None:
        """Create (409, and nothing stored, if one id exists) or update (404 if one does not)
        ``examples``, by id: all of them or none, as LangSmith does. None when done."""
        with self._lock:
            clash = [i for i in examples if (i in self.examples) == creating]
            if clash:
                status, what = (409, "already exist") if creating else (404, "not found")
                return JSONResponse({"detail": f"examples {what}: {clash[:3]}"}, status)
            for example_id, fields in examples.items():
                stored = self.examples.get(example_id) or {"id": example_id, "created_at": _now()}
                self.examples[example_id] = {
                    **stored,
                    **fields,
                    "id": example_id,
                    "modified_at": _now(),
                }
        return None

    def examples_in(self, dataset_name: str) -> list[dict]:
        """The examples stored in the dataset named ``dataset_name``."""
        ids = [d["id"] for d in self.datasets.values() if d["name"] == dataset_name]
        return [e for e in self.examples.values() if e["dataset_id"] in ids]

    # --- the API ---------------------------------------------------------------------
    def build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def log_delay_and_fail(request: Request, call_next: Any) -> Response:
            path = request.url.path.removeprefix("/api/v1")
            self.requests.append((request.method, path, request.url.query))
            if not path.startswith(UNAUTHENTICATED) and not request.headers.get("x-api-key"):
                return JSONResponse({"detail": "missing x-api-key"}, 401)
            workspace = self.org_keys.get(request.headers.get("x-api-key", ""))
            if workspace and request.headers.get("x-tenant-id") != workspace:
                detail = "an organization-scoped key needs the X-Tenant-Id of a workspace"
                return JSONResponse({"detail": detail}, 403)
            if len(request.url.path) + len(request.url.query) > MAX_URL_BYTES:
                return JSONResponse({"detail": "request URI too long"}, 414)
            if int(request.headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
                return JSONResponse({"detail": "request entity too large"}, 413)
            if self.latency:
                await asyncio.sleep(self.latency)
            failure = next(
                (f for f in self.failures if f.times > 0 and path.startswith(f.path)), None
            )
            if failure is None:
                return await call_next(request)
            failure.times -= 1
            if failure.after_work:
                await call_next(request)  # it takes effect; the answer is lost
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return JSONResponse({"detail": "injected"}, failure.status, headers=headers)

        def route(method: str, path: str) -> Any:
            def register(func: Any) -> Any:
                for prefix in API_PREFIXES:
                    app.add_api_route(prefix + path, func, methods=[method])
                return func

            return register

        @route("GET", "/info")
        async def info() -> dict:
            flags = {"dataset_examples_multipart_enabled": self.multipart}
            return {"version": "emulator", "instance_flags": flags}

        @route("GET", "/sessions")
        async def sessions() -> list:
            return [{"id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "name": "default"}]

        @route("GET", "/datasets")
        async def list_datasets(name: str | None = None) -> list:
            return [d for d in self.datasets.values() if name is None or d["name"] == name]

        @route("GET", "/datasets/{dataset_id}")
        async def read_dataset(dataset_id: uuid.UUID) -> Response:
            dataset_id = str(dataset_id)
            if dataset_id not in self.datasets:
                return JSONResponse({"detail": "not found"}, 404)
            return JSONResponse(self.datasets[dataset_id])

        @route("POST", "/datasets")
        async def create_dataset(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                if any(d["name"] == body["name"] for d in self.datasets.values()):
                    return JSONResponse({"detail": "dataset already exists"}, 409)
                dataset = {
                    "id": str(uuid.uuid4()),
                    "name": body["name"],
                    "description": body.get("description"),
                    "data_type": body.get("data_type", "kv"),
                    "created_at": _now(),
                }
                self.datasets[dataset["id"]] = dataset
            return JSONResponse(dataset)

        @route("POST", "/examples/bulk")
        async def create_examples(request: Request) -> Response:
            body = await request.json()
            examples = {example.get("id") or str(uuid.uuid4()): example for example in body}
            refused = self.write_examples(examples, creating=True)
            return refused or JSONResponse([self.examples[i] for i in examples])

        @route("PATCH", "/examples/bulk")
        async def update_examples(request: Request) -> Response:
            """Each update replaces the fields it names; an unknown id fails the request."""
            updates = {update.get("id"): update for update in await request.json()}
            refused = self.write_examples(updates, creating=False)
            count = len(updates)
            return refused or JSONResponse({"message": f"{count} examples updated", "count": count})

        async def multipart_examples(dataset_id: uuid.UUID, request: Request) -> Response:
            """The multipart examples endpoint: a part ``{id}`` (the example's fields as
            JSON), ``{id}.inputs`` and ``{id}.outputs`` per example. POST creates, PATCH
            updates, as the JSON endpoints do."""
            if not self.multipart:
                return JSONResponse({"detail": "Not Found"}, 404)
            parts = _multipart(request.headers.get("content-type", ""), await request.body())
            if parts is None:
                return JSONResponse({"detail": "not a multipart/form-data body"}, 422)
            creating = request.method == "POST"
            examples: dict[str, dict] = {}
            for name, value in parts.items():
                example_id, _, field_name = name.partition(".")
                if _uuids([example_id]) is None or field_name not in ("", "inputs", "outputs"):
                    return JSONResponse({"detail": f"unexpected part {name!r}"}, 422)
                fields = examples.setdefault(
                    str(uuid.UUID(example_id)), {"dataset_id": str(dataset_id)} if creating else {}
                )
                fields.update(value if field_name == "" else {field_name: value})
            refused = self.write_examples(examples, creating=creating)
            return refused or JSONResponse({"count": len(examples), "example_ids": list(examples)})

        # The SDK appends /platform/... to an API URL ending in /v1, else /v1/platform/...
        for path in ("/v1/platform/datasets/{dataset_id}/examples",
                     "/api/v1/platform/datasets/{dataset_id}/examples"):  # fmt: skip
            app.add_api_route(path, multipart_examples, methods=["POST", "PATCH"])

        @route("POST", "/examples")
        async def create_example(request: Request) -> Response:
            example = await request.json()
            example_id = example.get("id") or str(uuid.uuid4())
            refused = self.write_examples({example_id: example}, creating=True)
            return refused or JSONResponse(self.examples[example_id])

        def page(items: list, request: Request) -> list:
            offset = int(request.query_params.get("offset", 0))
            limit = int(request.query_params.get("limit", 100))
            return items[offset : offset + limit]

        @route("GET", "/examples")
        async def list_examples(request: Request) -> Any:
            ids = _uuids(request.query_params.getlist("id"))
            dataset = request.query_params.get("dataset")
            if ids is None:
                return JSONResponse({"detail": "id must be UUIDs"}, 422)
            found = [
                e
                for e in self.examples.values()
                if (not ids or e["id"] in ids) and (dataset is None or e["dataset_id"] == dataset)
            ]
            return page(found, request)

        @route("GET", "/feedback")
        async def list_feedback(request: Request) -> Any:
            runs = _uuids(request.query_params.getlist("run"))
            if runs is None:
                return JSONResponse({"detail": "run must be UUIDs"}, 422)
            keys = set(request.query_params.getlist("key"))
            found = [
                f
                for f in self.feedback
                if (not runs or f["run_id"] in runs) and (not keys or f["key"] in keys)
            ]
            return page(found, request)

        @route("POST", "/feedback")
        async def create_feedback(request: Request) -> Response:
            """One feedback, with the id the client chose: an existing id is a 409 (nothing
            changes), a key is required, a score has at most 4 decimals."""
            body = await request.json()
            ids = _uuids([str(body.get(name)) for name in ("id", "run_id") if body.get(name)])
            problem = (
                "id and run_id must be UUIDs" if ids is None
                else "key is required" if not body.get("key")
                else "score has more than 4 decimals" if _too_precise(body.get("score"))
                else None
            )  # fmt: skip
            if problem:
                return JSONResponse({"detail": problem}, 422)
            with self._lock:
                if any(f["id"] == str(body.get("id")) for f in self.feedback):
                    return JSONResponse({"detail": "feedback already exists"}, 409)
                item = self.add_feedback(body.pop("run_id", None), body.pop("key"), **body)
            return JSONResponse(item)

        @route("PATCH", "/feedback/{feedback_id}")
        async def update_feedback(feedback_id: uuid.UUID, request: Request) -> Response:
            """Changes the fields it names; only score, value, correction and comment."""
            body = await request.json()
            unknown = sorted(set(body) - {"score", "value", "correction", "comment"})
            if unknown or _too_precise(body.get("score")):
                return JSONResponse({"detail": f"cannot update {unknown or 'score'}"}, 422)
            with self._lock:
                item = next((f for f in self.feedback if f["id"] == str(feedback_id)), None)
                if item is None:
                    return JSONResponse({"detail": "feedback not found"}, 404)
                item.update(body, modified_at=_now())
            return JSONResponse(item)

        @route("GET", "/runs/rules")
        async def list_rules() -> list:
            return list(self.rules.values())

        @app.get("/api/v2/runs/rules")
        async def list_rules_v2(cursor: str | None = None, page_size: int = 20) -> Response:
            """Newest first, ``page_size`` a page, ``next_cursor`` until the last."""
            if not self.rules_v2:
                return JSONResponse({"detail": "Not Found"}, 404)
            rules = sorted(self.rules.values(), key=lambda r: (r["updated_at"], r["id"]))[::-1]
            start = int(cursor or 0)
            end = start + page_size
            next_cursor = str(end) if end < len(rules) else None
            return JSONResponse({"items": rules[start:end], "next_cursor": next_cursor})

        @route("PATCH", "/runs/rules/{rule_id}")
        async def patch_rule(rule_id: uuid.UUID, request: Request) -> Response:
            rule_id = str(rule_id)
            if rule_id not in self.rules:
                return JSONResponse({"detail": "rule not found"}, 404)
            body = await request.json()
            missing = [name for name in RULE_REQUIRED if name not in body]
            unknown = sorted(set(body) - set(RULE_REQUIRED) - set(RULE_DEFAULTS))
            if missing or unknown:
                return JSONResponse({"detail": f"missing {missing}, unknown {unknown}"}, 422)
            rule = self.rules[rule_id]
            kept = {k: rule[k] for k in ("id", "created_at", "tenant_id") if k in rule}
            body = {k: v for k, v in body.items() if k not in self.rule_fields_ignored}
            self.rules[rule_id] = {**RULE_DEFAULTS, **body, **kept, "updated_at": _now()}
            return JSONResponse(self.rules[rule_id])

        @route("GET", "/runs/{run_id}")
        async def read_run(run_id: uuid.UUID) -> Response:
            run = self.runs.get(str(run_id))
            return JSONResponse(run) if run else JSONResponse({"detail": "run not found"}, 404)

        @route("POST", "/runs/rules/{rule_id}/trigger")
        async def trigger_rule(rule_id: uuid.UUID) -> Response:
            rule_id = str(rule_id)
            if rule_id not in self.rules:
                return JSONResponse({"detail": "rule not found"}, 404)
            self.triggered.append(rule_id)
            return JSONResponse({"status": "triggered"})

        # --- admin routes, for a benchmark driving the emulator from another process ---
        @app.post("/_admin/feedback")
        async def admin_feedback(request: Request) -> dict:
            for item in await request.json():
                self.add_feedback(item.pop("run_id"), item.pop("key"), **item)
            return {"feedback": len(self.feedback)}

        @app.post("/_admin/config")
        async def admin_config(request: Request) -> dict:
            self.latency = float((await request.json()).get("latency", self.latency))
            return {"latency": self.latency}

        @app.post("/_admin/reset")
        async def admin_reset() -> dict:
            self.requests.clear()
            self.examples.clear()
            self.datasets.clear()
            self.feedback.clear()
            return {"reset": True}

        @app.get("/_admin/stats")
        async def admin_stats(dataset: str | None = None) -> dict:
            calls = [c for c in self.requests if not c[1].startswith("/_admin")]
            examples = self.examples_in(dataset) if dataset else list(self.examples.values())
            return {"api_calls": len(calls), "examples": len(examples)}

        @app.get("/api/v1/public/download")
        async def public_download(jwt: str) -> Response:
            """Self-hosted LangSmith's blob URLs: relative, ``/api/v1/public/download?jwt=``."""
            return await blob(jwt)

        @app.get("/blobs/{name}")
        async def blob(name: str) -> Response:
            if name in self.redirects:
                return Response(status_code=307, headers={"Location": self.redirects[name]})
            if name in self.expired_blobs:
                xml = (
                    "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
                )
                return Response(xml, 403, media_type="application/xml")
            if name not in self.blobs:
                return Response("<Error><Code>NoSuchKey</Code></Error>", 404)
            return JSONResponse(self.blobs[name])

        return app


def _multipart(content_type: str, body: bytes) -> dict[str, Any] | None:
    """The JSON parts of a multipart/form-data body, by name (the stdlib's MIME parser)."""
    if not content_type.startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = json.loads(part.get_payload(decode=True))
    return parts


def _too_precise(score: Any) -> bool:
    return isinstance(score, float) and round(score, 4) != score


def _uuids(values: list[str]) -> set[str] | None:
    """The values as canonical UUID strings, or None if one is no UUID (LangSmith: 422)."""
    try:
        return {str(uuid.UUID(value)) for value in values}
    except ValueError:
        return None


@contextmanager
def running_emulator() -> Iterator[Emulator]:
    """An :class:`Emulator` served by uvicorn on 127.0.0.1 for the duration of the block."""
    emulator = Emulator()
    with uvicorn_in_thread(emulator.build_app()) as url:
        emulator.url = url
        yield emulator
