"""Settings: every environment variable the receiver reads, declared once, typed and checked.

:class:`Settings` is the receiver's own; a handler declares its options the same way, as a
``HandlerOptions`` subclass named ``Options`` in its module (see ``handlers/_template.py``).
Both are read with pydantic-settings when the process starts, and a bad value stops it with
a message naming the variable. Nothing else in ``receiver/`` reads ``os.environ``.

    settings = Settings.from_env()
    settings.max_body_bytes  # 26214400
    forwarded_environment([Settings], {"WEBHOOK_MAX_ATTEMPTS": "3", "LS_WEBHOOK": "s"})
    # {'WEBHOOK_MAX_ATTEMPTS': '3'}: secrets travel in Modal secrets, never this way
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Self, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HANDLERS = ("handlers.log_runs",)
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")  # RFC 3986 unreserved characters
_PRINTABLE = re.compile(r"^[!-+\--~]+$")  # printable ASCII, no space, no comma


def is_signing_secret(value: str) -> bool:
    """Whether ``value`` can be a signing secret: printable ASCII, no space, no comma (the
    separator of ``LS_SIGNING_SECRETS``)."""
    return bool(_PRINTABLE.match(value))


def _module_path(path: str) -> str:
    if not _MODULE_PATH.match(path):
        raise ValueError(f"{path!r} is not a dotted module path")
    return path


ModulePath = Annotated[str, AfterValidator(_module_path)]  # "handlers.notify_slack"


class SettingsError(ValueError):
    """An environment variable holds a value the receiver cannot use."""


def split_list(raw: Any) -> Any:
    """``"a, b,,c"`` → ``("a", "b", "c")``: how every comma-separated variable is read."""
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


CommaList = Annotated[tuple[str, ...], NoDecode]  # a variable holding "a,b,c"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """``"30s"``, ``"10m"``, ``"6h"``, ``"1d"``, ``"2w"`` → seconds; numbers pass as seconds."""
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f"{value!r} is no duration: write 30s, 10m, 6h, 1d or 2w")
        return float(found[1]) * _UNIT_SECONDS[found[2]]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]  # seconds
# A host name or a shell-style pattern of them ("*.example.com"): no scheme, port or path.
HostPattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9*?.-]+$")]
# A Modal app, secret or Dict name, as modal/_utils/name_utils.py accepts it.
ModalName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class EnvSettings(BaseSettings):
    """Variables named exactly as written (field aliases), empty meaning "use the default"."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read the variables from the process environment (or from ``env``, for tests).

        Raises :class:`SettingsError` naming every variable whose value is unusable.
        """
        try:
            if env is None:
                return cls()
            return cls.model_validate({key: value for key, value in env.items() if value != ""})
        except ValidationError as exc:
            raise SettingsError(describe_errors(cls, exc)) from None

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """Every variable this class reads, mapped to whether it holds a secret."""
        return {
            str(info.validation_alias or name): _is_secret(info.annotation)
            for name, info in cls.model_fields.items()
        }


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def describe_errors(cls: type[EnvSettings], exc: ValidationError) -> str:
    """``"WEBHOOK_MAX_ATTEMPTS='x': Input should be a valid integer"``, one per bad variable.

    The value is shown unless the variable holds a secret.
    """
    secret = {name for name, is_secret in cls.variables().items() if is_secret}
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else cls.__name__
        shown = "" if name in secret or error["type"] == "missing" else f"={error['input']!r}"
        parts.append(f"{name}{shown}: {error['msg']}")
    return "; ".join(parts)


def forwarded_environment(
    classes: Iterable[type[EnvSettings]], environ: Mapping[str, str]
) -> dict[str, str]:
    """The non-secret variables the given classes declare that are set in ``environ``.

    ``webhook_app.py`` passes these to the Modal functions, so a handler's options reach the
    cloud without anyone keeping a list of names; secrets come from Modal secrets only.
    """
    names = {
        name for cls in classes for name, is_secret in cls.variables().items() if not is_secret
    }
    return {name: environ[name] for name in sorted(names) if environ.get(name)}


class Settings(EnvSettings):
    """What the receiver needs to know; the variables are listed in ``docs/operations.md``."""

    # The edge: who may deliver, and how much.
    secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), validation_alias="LS_WEBHOOK", repr=False
    )
    handlers: Annotated[tuple[ModulePath, ...], NoDecode] = Field(
        DEFAULT_HANDLERS, validation_alias="WEBHOOK_HANDLERS", min_length=1
    )
    signing_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), validation_alias="LS_SIGNING_SECRETS", repr=False
    )
    routes_file: Path | None = Field(None, validation_alias="WEBHOOK_ROUTES")
    max_body_bytes: int = Field(25 * 1024 * 1024, validation_alias="WEBHOOK_MAX_BODY_BYTES", gt=0)
    # Recording a delivery must end well inside LangSmith's 5 s: past it the answer is 503.
    ack_deadline_seconds: float = Field(
        3.0, validation_alias="WEBHOOK_ACK_DEADLINE_SECONDS", gt=0, lt=5
    )

    # The local server's connections (receiver/runtimes/http_guard.py; Modal's proxy holds
    # them on Modal): a request's deadline to arrive, and how many connections at once.
    read_timeout_seconds: float = Field(15.0, validation_alias="WEBHOOK_READ_TIMEOUT_SECONDS", gt=0)
    max_connections: int | None = Field(None, validation_alias="WEBHOOK_MAX_CONNECTIONS", ge=16)

    # Running handlers: attempts, backoff, and (locally) how many at once.
    max_attempts: int = Field(5, validation_alias="WEBHOOK_MAX_ATTEMPTS", ge=1)
    retry_base_seconds: float = Field(2.0, validation_alias="WEBHOOK_RETRY_BASE_SECONDS", ge=0)
    retry_max_seconds: float = Field(300.0, validation_alias="WEBHOOK_RETRY_MAX_SECONDS", ge=0)
    worker_concurrency: int = Field(64, validation_alias="WEBHOOK_WORKER_CONCURRENCY", ge=1)
    # How long a handler attempt is claimed for without a renewal (renewed every third of
    # it while the handler runs): a process that dies holding one is replaced after this.
    lease_seconds: float = Field(30.0, validation_alias="WEBHOOK_LEASE_SECONDS", ge=1)
    # How often the local worker looks for deliveries left pending, and for alerts due.
    sweep_seconds: float = Field(30.0, validation_alias="WEBHOOK_SWEEP_SECONDS", gt=0, le=3600)

    # The local store.
    store_path: Path = Field(Path("data/deliveries.sqlite3"), validation_alias="WEBHOOK_STORE_PATH")
    store_busy_seconds: float = Field(2.0, validation_alias="WEBHOOK_STORE_BUSY_SECONDS", ge=0)

    # LangSmith, for handlers and scripts.
    langsmith_api_key: SecretStr | None = Field(None, validation_alias="LANGSMITH_API_KEY")
    langsmith_endpoint: str = Field(
        "https://api.smith.langchain.com", validation_alias="LANGSMITH_ENDPOINT"
    )
    # The workspace an organization-scoped key acts in (sent as X-Tenant-Id).
    langsmith_workspace_id: uuid.UUID | None = Field(
        None, validation_alias="LANGSMITH_WORKSPACE_ID"
    )
    langsmith_web_url: str = Field(
        "https://smith.langchain.com", validation_alias="LANGSMITH_WEB_URL"
    )
    # Run data LangSmith sends as presigned URLs: fetched from the API's own host, the
    # storage services LangSmith keeps blobs in (S3, GCS, Azure) or these hosts (shell-style
    # patterns: a self-hosted MinIO, say), within a time and a size.
    langsmith_blob_hosts: Annotated[tuple[HostPattern, ...], NoDecode] = Field(
        (), validation_alias="LANGSMITH_BLOB_HOSTS"
    )
    blob_timeout_seconds: float = Field(
        10.0, validation_alias="LANGSMITH_BLOB_TIMEOUT_SECONDS", gt=0, le=300
    )
    max_blob_bytes: int = Field(25 * 1024 * 1024, validation_alias="LANGSMITH_MAX_BLOB_BYTES", gt=0)

    # The delivery console (/console) and its JSON API (/api): off without a token, which is
    # its own credential (never the webhook secret LangSmith holds).
    console_token: SecretStr | None = Field(
        None, validation_alias="WEBHOOK_CONSOLE_TOKEN", min_length=16, repr=False
    )
    console_session_hours: float = Field(
        12.0, validation_alias="WEBHOOK_CONSOLE_SESSION_HOURS", gt=0, le=24 * 30
    )
    # Where the app is reachable (deploy.py sets it from the Modal URL): absolute links in
    # alerts. Unset, they are relative paths.
    public_url: str | None = Field(None, validation_alias="WEBHOOK_PUBLIC_URL")
    # Alerts: a Slack incoming webhook (a credential: keep it in the webhook Modal secret).
    slack_alerts_webhook_url: SecretStr | None = Field(
        None, validation_alias="SLACK_ALERTS_WEBHOOK_URL", repr=False
    )

    # Deployment: names of the Modal app, its secrets and its Dict.
    app_name: ModalName = Field("langsmith-webhooks", validation_alias="WEBHOOK_APP_NAME")
    webhook_secret_name: ModalName = Field("ls-webhook", validation_alias="WEBHOOK_SECRET_NAME")
    langsmith_secret_name: ModalName = Field("langsmith", validation_alias="LANGSMITH_SECRET_NAME")
    extra_secret_names: Annotated[tuple[ModalName, ...], NoDecode] = Field(
        (), validation_alias="WEBHOOK_EXTRA_SECRETS"
    )
    # At most 52 characters: the names made from it ("-serve-index") stay within Modal's 64.
    dict_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,52}$")] = Field(
        "langsmith-webhook-deliveries", validation_alias="WEBHOOK_DICT_NAME"
    )
    # Dead letters stay listable and replayable this long (the sweeper keeps them alive:
    # Modal drops a Dict entry 7 days after its last use), then are removed.
    dead_retention_days: float = Field(
        30.0, validation_alias="WEBHOOK_DEAD_RETENTION_DAYS", gt=0, le=3650
    )
    min_containers: int = Field(0, validation_alias="WEBHOOK_MIN_CONTAINERS", ge=0, le=10)
    proxy_auth: bool = Field(False, validation_alias="WEBHOOK_PROXY_AUTH")
    # A Modal proxy token (`modal workspace proxy-tokens create`), for connect_langsmith.py.
    modal_proxy_key: str | None = Field(
        None, validation_alias="MODAL_PROXY_KEY", pattern=r"^wk-[A-Za-z0-9]+$"
    )
    modal_proxy_secret: SecretStr | None = Field(None, validation_alias="MODAL_PROXY_SECRET")

    _split = field_validator(
        "secrets",
        "signing_secrets",
        "handlers",
        "extra_secret_names",
        "langsmith_blob_hosts",
        mode="before",
    )(split_list)

    @field_validator("secrets")
    @classmethod
    def _url_safe(cls, secrets: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        """One rule for every place a secret travels (header, query, log redaction)."""
        for secret in secrets:
            if not _URL_SAFE.match(secret.get_secret_value()):
                raise ValueError(
                    "each secret must be URL-safe ASCII (letters, digits, '-', '_', '.', '~'),"
                    " as scripts/create_secrets.py generates"
                )
        return secrets

    @field_validator("signing_secrets")
    @classmethod
    def _printable(cls, secrets: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in secrets:
            if not is_signing_secret(secret.get_secret_value()):
                raise ValueError("each signing secret must be printable ASCII without commas")
        return secrets

    @field_validator("handlers")
    @classmethod
    def _once_each(cls, handlers: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(handlers))

    @field_validator("console_token")
    @classmethod
    def _typable(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not _URL_SAFE.match(token.get_secret_value()):
            raise ValueError("must be URL-safe ASCII, as scripts/create_secrets.py generates")
        return token

    @field_validator("slack_alerts_webhook_url")
    @classmethod
    def _https(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL (Slack's incoming webhook)")
        return url

    @field_validator("langsmith_endpoint", "langsmith_web_url", "public_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The webhook secrets in clear, for comparison and log redaction only."""
        return tuple(secret.get_secret_value() for secret in self.secrets)

    @property
    def redacted_values(self) -> tuple[str, ...]:
        """Every secret the process holds: what log redaction replaces by ``***``."""
        others = (self.langsmith_api_key, self.console_token, self.slack_alerts_webhook_url)
        clear = [secret.get_secret_value() for secret in others if secret is not None]
        return (*self.secret_values, *self.signing_secret_values, *clear)

    @property
    def signing_secret_values(self) -> tuple[str, ...]:
        """The signing secrets in clear, for signature checks and log redaction only."""
        return tuple(secret.get_secret_value() for secret in self.signing_secrets)

    def deliveries_dict_name(self, *, serving: bool) -> str:
        """The Dict of deliveries: ``modal serve`` (the dev loop) keeps its own, so that it
        never answers "duplicate" for, or lists with, the deployed app's deliveries."""
        return f"{self.dict_name}-serve" if serving else self.dict_name

    def deliveries_index_name(self, *, serving: bool) -> str:
        """The ``modal.Queue`` indexing that Dict's deliveries for the sweeper."""
        return f"{self.deliveries_dict_name(serving=serving)}-index"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): exponential backoff."""
        return min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempt - 1))


class HandlerOptions(EnvSettings):
    """Base of a handler's ``Options``: its own variables, read and checked at start-up.

    Type a credential as ``SecretStr | None``: it is then never forwarded in clear to the
    Modal functions (put it in a Modal secret) and never shown in an error.
    """

    def local_modules(self) -> tuple[str, ...]:
        """Modules the handler imports by a name its options hold (an evaluator, say): on
        Modal, their top-level packages are added to the image with the handler's own."""
        return ()
