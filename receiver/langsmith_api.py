"""Talking to LangSmith from handlers and scripts: the SDK client and presigned blobs.

The ``langsmith`` SDK and ``httpx`` are imported inside the functions that use them, never
at module level: importing a handler (the web function does, at start-up) must not pay
for them (about 700 ms and 230 ms of cold start).

    client = make_client(settings)                 # LANGSMITH_API_KEY, LANGSMITH_ENDPOINT
    client = shared_client(settings)               # the same one for every delivery
    inputs = RunData(client, settings).get(run, "inputs")   # body, presigned URL or SDK
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from receiver.settings import Settings

if TYPE_CHECKING:
    from langsmith import Client

    from receiver.sources.rule import Run

T = TypeVar("T")

# Where LangSmith stores run data: S3 (virtual-hosted and path-style, regional), Google
# Cloud Storage and Azure Blob Storage, the engines of LangSmith's blob storage. Shell-style
# patterns ("*" spans dots); a plain "*.amazonaws.com" would admit any EC2 host.
STORAGE_HOSTS = (
    "s3.amazonaws.com",
    "*.s3.amazonaws.com",
    "s3.*.amazonaws.com",
    "*.s3.*.amazonaws.com",
    "s3-*.amazonaws.com",
    "*.s3-*.amazonaws.com",
    "storage.googleapis.com",
    "*.storage.googleapis.com",
    "*.blob.core.windows.net",
)
MAX_BLOB_REDIRECTS = 3
FEEDBACK_RUNS_PER_REQUEST = 100


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
    ``/info`` (and a ``/sessions``) request each, and pinned a session until exit. Its
    ``/info`` is read once, here. Closed when the process exits."""
    key = settings.langsmith_api_key.get_secret_value() if settings.langsmith_api_key else ""
    account = (settings.langsmith_endpoint, key, str(settings.langsmith_workspace_id or ""))
    with _clients_lock:
        client = _clients.get(account)
        if client is None:
            client = make_client(settings)
            client.info  # noqa: B018 (read now, under the lock: threads that race on the
            # SDK's lazily cached /info would each ask for it)
            _clients[account] = client
            atexit.register(client.close, timeout=0)
        return client


def feedback_by_run(
    client: Client, run_ids: Sequence[Any], keys: Sequence[str] | None = None
) -> dict[str, list]:
    """All feedback on ``run_ids`` (only ``keys``, when given), grouped by run id: one
    ``list_feedback`` request per 100 runs (their ids travel in the query string, ~4 KB)."""
    grouped: dict[str, list] = defaultdict(list)
    for chunk in chunked(run_ids, FEEDBACK_RUNS_PER_REQUEST):
        for feedback in client.list_feedback(run_ids=list(chunk), feedback_key=keys or None):
            grouped[str(feedback.run_id)].append(feedback)
    return grouped


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


@dataclass(frozen=True)
class BlobHosts:
    """Where a presigned URL may point: the API's own origin, the storage services
    LangSmith keeps run data in (over https), and the operator's ``LANGSMITH_BLOB_HOSTS``
    (http too: a MinIO inside the network). Anything else (a cloud metadata address, an
    internal service) is never requested: the URL comes from a webhook body."""

    api_origin: tuple[str, str, int | None]
    extra: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobHosts:
        return cls(_origin(settings.langsmith_endpoint), settings.langsmith_blob_hosts)

    def check(self, url: str) -> None:
        """Raise :class:`BlobError` unless ``url`` may be fetched."""
        scheme, host, port = _origin(url)
        if (scheme, host, port) == self.api_origin or (
            scheme in ("http", "https") and _matches(host, self.extra)
        ):
            return
        if scheme == "https" and _matches(host, STORAGE_HOSTS):
            return
        raise BlobError(
            f"presigned URL host {host!r} is neither LangSmith's API nor a storage host"
            " (add it to LANGSMITH_BLOB_HOSTS if LangSmith really stores blobs there)"
        )


def _matches(host: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        port = -1  # not a port: matches no origin
    return parts.scheme, (parts.hostname or "").lower(), port


def fetch_presigned_json(url: str, *, hosts: BlobHosts, timeout: float, max_bytes: int) -> Any:
    """GET a presigned URL and parse its JSON: only from ``hosts`` (redirects too, at most
    3), within ``timeout`` seconds in all and ``max_bytes``."""
    import httpx

    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as http:
            for _ in range(MAX_BLOB_REDIRECTS + 1):
                hosts.check(url)
                with http.stream("GET", url) as response:
                    if response.is_redirect:
                        url = str(response.url.join(response.headers.get("location", "")))
                        continue
                    if response.status_code in (401, 403):
                        raise BlobError(
                            f"presigned URL refused with {response.status_code}:"
                            " it has probably expired"
                        )
                    if response.status_code != 200:
                        raise BlobError(f"presigned URL answered {response.status_code}")
                    size = 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise BlobError(f"blob is larger than {max_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("the whole blob took too long")
                        chunks.append(chunk)
                    break
            else:
                raise BlobError(f"presigned URL redirected more than {MAX_BLOB_REDIRECTS} times")
    except httpx.TimeoutException:
        raise BlobError(f"presigned URL did not answer within {timeout} s") from None
    except httpx.HTTPError as exc:
        raise BlobError(f"presigned URL failed: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise BlobError("blob is not JSON") from None


class RunData:
    """A run's ``inputs`` and ``outputs``, wherever LangSmith put them: in the webhook body,
    behind a presigned URL (``inputs_s3_urls["ROOT"]["presigned_url"]``), or, when the body
    has neither or the URL has expired, in LangSmith itself, read through the SDK.

    One per delivery: a run read through the SDK is read once for both fields.
    """

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.hosts = BlobHosts.from_settings(settings)
        self._stored: dict[str, Any] = {}

    def get(self, run: Run, field: str, *, required: bool = True) -> dict[str, Any] | None:
        """``run.inputs`` or ``run.outputs`` (``field``) as a dict; :class:`BlobError` when
        no copy can be had (a retry would not help). Not ``required``: None when LangSmith's
        own copy of the run has none either (an errored run has no outputs)."""
        value = getattr(run, field)
        if value is not None:
            return value
        urls = getattr(run, f"{field}_s3_urls") or {}
        presigned = (urls.get("ROOT") or {}).get("presigned_url")
        problem = f"no {field} in the body and no presigned URL"
        if presigned:
            try:
                data = fetch_presigned_json(
                    absolute_blob_url(presigned, self.settings.langsmith_endpoint),
                    hosts=self.hosts,
                    timeout=self.settings.blob_timeout_seconds,
                    max_bytes=self.settings.max_blob_bytes,
                )
                if isinstance(data, dict):
                    return data
                problem = f"{field} blob is not a JSON object"
            except BlobError as exc:
                problem = str(exc)
        stored = getattr(self._read(run, problem), field, None)
        if isinstance(stored, dict):
            return stored
        if required or presigned:
            raise BlobError(f"{problem}, and LangSmith's copy of the run has no {field}")
        return None

    def _read(self, run: Run, problem: str) -> Any:
        """The run as LangSmith stores it (``read_run``: it picks the endpoint the
        instance serves; the project and start time let SmithDB-only instances find it)."""
        from langsmith.utils import LangSmithNotFoundError

        key = str(run.id)
        if key not in self._stored:
            try:
                self._stored[key] = self.client.read_run(
                    run.id, project_id=run.session_id, start_time=run.start_time
                )
            except LangSmithNotFoundError:
                raise BlobError(f"{problem}, and LangSmith has no run {run.id}") from None
        return self._stored[key]
