"""Talking to LangSmith from handlers and scripts: the SDK client and presigned blobs.

The ``langsmith`` SDK and ``httpx`` are imported inside the functions that use them, never
at module level: importing a handler (the web function does, at start-up) must not pay
for them (about 700 ms and 230 ms of cold start).

    client = make_client(settings)                 # LANGSMITH_API_KEY, LANGSMITH_ENDPOINT
    client = shared_client(settings)               # the same one for every delivery
    url = absolute_blob_url(url, settings.langsmith_endpoint)
    inputs = fetch_presigned_json(url, timeout=10, max_bytes=25 * 2**20)
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from receiver.settings import Settings

if TYPE_CHECKING:
    from langsmith import Client

T = TypeVar("T")


class LangSmithSetupError(RuntimeError):
    """LangSmith cannot be reached as configured (say, no API key)."""


class BlobError(RuntimeError):
    """A presigned input/output blob could not be fetched (expired, too large, not JSON)."""


def make_client(settings: Settings) -> Client:
    """A ``langsmith.Client`` for ``LANGSMITH_ENDPOINT`` (default: LangSmith cloud, US).

    Tracing is off: this client only reads and writes datasets, feedback and rules.
    """
    if settings.langsmith_api_key is None:
        raise LangSmithSetupError(
            "LANGSMITH_API_KEY is not set: create the Modal secret 'langsmith' with"
            " LANGSMITH_API_KEY=... (scripts/create_secrets.py does it), or export it locally"
        )
    from langsmith import Client

    workspace = settings.langsmith_workspace_id
    return Client(
        api_url=settings.langsmith_endpoint,
        api_key=settings.langsmith_api_key.get_secret_value(),
        workspace_id=str(workspace) if workspace else None,
        auto_batch_tracing=False,
    )


_clients: dict[tuple[str, str, str], Client] = {}
_clients_lock = threading.Lock()


def shared_client(settings: Settings) -> Client:
    """One client per process and account, for handlers: a client per delivery cost an
    ``/info`` (and a ``/sessions``) request each, and pinned a session until exit. Closed
    when the process exits."""
    key = settings.langsmith_api_key.get_secret_value() if settings.langsmith_api_key else ""
    account = (settings.langsmith_endpoint, key, str(settings.langsmith_workspace_id or ""))
    with _clients_lock:
        client = _clients.get(account)
        if client is None:
            client = make_client(settings)
            _clients[account] = client
            atexit.register(client.close, timeout=0)
        return client


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def absolute_blob_url(url: str, api_url: str) -> str:
    """A presigned URL as given, or, when relative (self-hosted LangSmith sends
    ``/api/v1/public/download?jwt=...``), resolved against the API URL the way the SDK
    resolves its own: a path starting with ``/api`` names the API root itself, so an
    ``/api`` or ``/api/v1`` ending of the API URL is not repeated."""
    if url.startswith(("http://", "https://")):
        return url
    base = api_url.rstrip("/")
    if url.startswith("/api/"):
        base = base.removesuffix("/api/v1").removesuffix("/api")
    return f"{base}/{url.lstrip('/')}"


def fetch_presigned_json(url: str, *, timeout: float, max_bytes: int) -> Any:
    """GET a presigned URL and parse its JSON, within ``timeout`` seconds and ``max_bytes``."""
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code in (401, 403):
                raise BlobError(
                    f"presigned URL refused with {response.status_code}: it has probably expired"
                )
            if response.status_code != 200:
                raise BlobError(f"presigned URL answered {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise BlobError(f"blob is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.TimeoutException:
        raise BlobError(f"presigned URL did not answer within {timeout} s") from None
    except httpx.HTTPError as exc:
        raise BlobError(f"presigned URL failed: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise BlobError("blob is not JSON") from None
