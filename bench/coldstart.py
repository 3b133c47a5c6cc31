"""One cold start, in this fresh interpreter: import the web path, then serve one request.

    python bench/coldstart.py ours|reference

Prints JSON: ``imports_ms`` (everything the web path imports, the app built) and
``first_request_ms``. ``modal`` is imported first and not timed: a Modal container has it
loaded before it imports the app's module. Modal's network calls (Dict, spawn) are replaced
by in-memory stand-ins; the reference's LangSmith calls go to the emulator on loopback
(``LANGSMITH_ENDPOINT``), with no added latency.
"""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import modal  # noqa: F401  (loaded by the container before user code; not timed)

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
BODY = (ROOT / "tests" / "data" / "langsmith_rule_payload.json").read_bytes()


async def post(app, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One POST through the ASGI interface, without importing an HTTP client."""
    sent, chunks = [], [BODY]

    async def receive():
        return {"type": "http.request", "body": chunks.pop() if chunks else b"", "more_body": False}

    async def send(message):
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 443),
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"), *headers],
    }  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"]


def ours() -> tuple[float, float, int]:
    # The stand-ins for modal.Dict and process.spawn (they need Modal's servers): not timed.
    from support.memory_modal import memory_store, offline_process

    started = time.perf_counter()
    import webhook_app

    webhook_app.store = memory_store()
    webhook_app.process = offline_process()
    app = webhook_app.web.local()
    imported = time.perf_counter()
    status = asyncio.run(post(app, "/", [(b"x-webhook-secret", os.environ["LS_WEBHOOK"].encode())]))
    return imported - started, time.perf_counter() - imported, status


def reference() -> tuple[float, float, int]:
    started = time.perf_counter()
    from langsmith import Client  # noqa: F401  (imported by the endpoint on its first call)
    from reference_app import app

    imported = time.perf_counter()
    status = asyncio.run(post(app, f"/?secret={os.environ['LS_WEBHOOK']}", []))
    return imported - started, time.perf_counter() - imported, status


if __name__ == "__main__":
    imports, first, status = {"ours": ours, "reference": reference}[sys.argv[1]]()
    print(
        json.dumps(
            {"imports_ms": imports * 1000, "first_request_ms": first * 1000, "status": status}
        )
    )
