"""Connect the deployed receiver to a LangSmith automation rule, through LangSmith's API.

    uv run scripts/connect_langsmith.py --list                    # the automation rules
    uv run scripts/connect_langsmith.py --rule "my rule"          # add our webhook to it
    uv run scripts/connect_langsmith.py --rule RULE_ID --trigger  # ... and fire it now
    uv run scripts/connect_langsmith.py --rule "my rule" --route prod-errors  # a route's URL

``--rule`` (an id or a display name) adds the receiver's URL, with the secret in the
``X-Webhook-Secret`` header (and Modal's ``Modal-Key``/``Modal-Secret`` proxy token, from
``MODAL_PROXY_KEY``/``MODAL_PROXY_SECRET``, when ``WEBHOOK_PROXY_AUTH`` is on), to the rule's
webhooks; a webhook on the same host is replaced
(a redeploy or a secret rotation), the rule's other webhooks are kept, and running it twice
changes nothing. ``--trigger`` asks LangSmith to run the rule now, so a real delivery
arrives. The URL and secret come from ``.webhook-state.json`` (``deploy.py`` and
``create_secrets.py`` write it) unless ``--url`` is given; ``--route NAME`` appends that
route's path (from the routes file in ``WEBHOOK_ROUTES``). Uses ``LANGSMITH_API_KEY`` and
``LANGSMITH_ENDPOINT``.

Exit codes: 0 done, 1 LangSmith refused, 2 usage, 3 missing prerequisite (API key, URL or
secret), 4 rule not found (or ambiguous).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from receiver.auth import SECRET_HEADER
from receiver.cli.setup import DEFAULT_STATE_PATH, CliError, ExitCode, State
from receiver.langsmith_api import LangSmithSetupError, make_client
from receiver.routes import load_routes
from receiver.settings import Settings, SettingsError
from receiver.sources import SOURCES

RULES_PATH = "/runs/rules"
# The listing's v2 endpoint, as the SDK's generated client calls it (``list_v2`` in
# langsmith/resources/evaluators.py): {"items": [...], "next_cursor": ...}. A path starting
# with /api is taken from the API root whatever LANGSMITH_ENDPOINT ends with.
RULES_V2_PATH = "/api/v2/runs/rules"
RULES_PAGE_SIZE = 100
MAX_RULE_PAGES = 100
# The fields of LangSmith's rule update schema (PATCH /runs/rules/{id} takes the create
# schema and replaces the rule: a field not sent takes its default). The rule's own values
# are sent back with the new webhooks, and the rule is read again to check that nothing
# else changed.
PATCHABLE_FIELDS = (
    "display_name", "session_id", "dataset_id", "is_enabled", "sampling_rate", "filter",
    "trace_filter", "tree_filter", "backfill_from", "use_corrections_dataset",
    "num_few_shot_examples", "extend_only", "transient", "add_to_annotation_queue_id",
    "add_to_dataset_id", "add_to_dataset_prefer_correction", "evaluators", "code_evaluators",
    "evaluator_id", "alerts", "webhooks", "evaluator_version", "include_extended_stats",
    "group_by", "spend_limit",
)  # fmt: skip


def _without_nulls(value: Any) -> Any:
    """``value`` with None entries dropped from every dict (the API refuses some nulls)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def with_our_webhook(webhooks: list[dict], url: str, headers: dict[str, str]) -> list[dict]:
    """``webhooks`` with any webhook on ``url``'s host replaced by ours (added if none)."""
    host = urlsplit(url).netloc
    kept = [hook for hook in webhooks if urlsplit(hook.get("url", "")).netloc != host]
    return [*kept, {"url": url, "headers": headers}]


def webhook_headers(secret: str, settings: Settings) -> dict[str, str]:
    """The webhook secret, and Modal's proxy token when the web function requires it."""
    headers = {SECRET_HEADER: secret}
    if settings.proxy_auth:
        if not (settings.modal_proxy_key and settings.modal_proxy_secret):
            raise CliError(
                ExitCode.MISSING_PREREQUISITE,
                "WEBHOOK_PROXY_AUTH is on: create a proxy token with `uv run modal workspace"
                " proxy-tokens create` and export MODAL_PROXY_KEY and MODAL_PROXY_SECRET",
            )
        headers["Modal-Key"] = settings.modal_proxy_key
        headers["Modal-Secret"] = settings.modal_proxy_secret.get_secret_value()
    return headers


def patch_body(rule: dict, webhooks: list[dict]) -> dict:
    """The PATCH body: the rule's current patchable fields, with ``webhooks`` replaced."""
    body = {name: rule[name] for name in PATCHABLE_FIELDS if rule.get(name) is not None}
    return _without_nulls({**body, "webhooks": webhooks})


def _changed(before: dict, after: dict) -> list[str]:
    """The fields, other than the webhooks, that ``before`` set and ``after`` does not keep."""
    return sorted(
        name
        for name in PATCHABLE_FIELDS
        if name != "webhooks"
        and before.get(name) is not None
        and _without_nulls(after.get(name)) != _without_nulls(before[name])
    )


class Rules:
    """LangSmith's automation-rule endpoints, through the SDK's authenticated requests."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _request(self, method: str, path: str, *, v2: bool = False, **kwargs: Any) -> Any:
        """The answer's JSON; None for a 404 of a v2 path (an instance without it)."""
        from langsmith.utils import LangSmithError, LangSmithNotFoundError

        try:
            response = self.client.request_with_retries(method, path, request_kwargs=kwargs)
        except LangSmithNotFoundError:
            if v2:
                return None
            raise CliError(ExitCode.FAILED, f"LangSmith has no {method} {path}") from None
        except LangSmithError as exc:
            raise CliError(ExitCode.FAILED, f"LangSmith refused {method} {path}: {exc}") from exc
        return response.json()

    def list(self) -> list[dict]:
        """Every rule, from the v2 listing (cursor pages; the v1 one is deprecated), or from
        v1 on an instance that has no v2 yet (self-hosted before it)."""
        rules: list[dict] = []
        params: dict[str, Any] = {"page_size": RULES_PAGE_SIZE}
        for _ in range(MAX_RULE_PAGES):
            page = self._request("GET", RULES_V2_PATH, v2=True, params=params)
            if page is None:
                return self._request("GET", RULES_PATH)
            rules.extend(page["items"])
            if not page.get("next_cursor"):
                return rules
            params = {**params, "cursor": page["next_cursor"]}
        raise CliError(ExitCode.FAILED, f"more than {MAX_RULE_PAGES} pages of rules")

    def find(self, id_or_name: str) -> dict:
        """The one rule whose id or display name is ``id_or_name``."""
        rules = self.list()
        matches = [r for r in rules if id_or_name in (r.get("id"), r.get("display_name"))]
        if len(matches) != 1:
            names = ", ".join(repr(r.get("display_name")) for r in rules) or "none"
            problem = "matches several rules" if matches else "matches no rule"
            raise CliError(ExitCode.NOT_FOUND, f"{id_or_name!r} {problem}; rules: {names}")
        return matches[0]

    def connect(self, rule: dict, url: str, headers: dict[str, str]) -> bool:
        """Put our webhook on ``rule``; False when it was already there as is."""
        webhooks = with_our_webhook(rule.get("webhooks") or [], url, headers)
        if webhooks == (rule.get("webhooks") or []):
            return False
        self._request("PATCH", f"{RULES_PATH}/{rule['id']}", json=patch_body(rule, webhooks))
        after = self.find(rule["id"])
        changed = _changed(rule, after)
        if changed or after.get("webhooks") != webhooks:
            raise CliError(
                ExitCode.FAILED,
                f"the rule changed beyond its webhooks: {', '.join(changed) or 'webhooks'}"
                " (check it in the LangSmith UI)",
            )
        return True

    def trigger(self, rule: dict) -> None:
        self._request("POST", f"{RULES_PATH}/{rule['id']}/trigger")


def route_url(base: str, settings: Settings, name: str) -> str:
    """The URL of route ``name``: ``base`` plus the route's path, if the route takes rules."""
    routes = load_routes(settings, SOURCES)
    route = routes.by_name.get(name)
    if route is None:
        known = ", ".join(routes.by_name)
        raise CliError(ExitCode.NOT_FOUND, f"no route {name!r} (routes: {known})")
    if "rule" not in route.sources:
        raise CliError(ExitCode.USAGE, f"route {name!r} takes no rule deliveries")
    return base.rstrip("/") + route.path


def render_rules(rules: list[dict]) -> str:
    """One line per rule: id, name, and the hosts its webhooks point at."""
    if not rules:
        return "no automation rules"
    lines = []
    for rule in rules:
        hosts = ", ".join(urlsplit(h.get("url", "")).netloc for h in rule.get("webhooks") or [])
        lines.append(f"{rule['id']}  {rule.get('display_name')!r}  webhooks: {hosts or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the automation rules")
    parser.add_argument("--rule", metavar="ID_OR_NAME", help="the rule to connect")
    parser.add_argument("--trigger", action="store_true", help="trigger the rule afterwards")
    parser.add_argument("--url", help="the receiver URL (default: from the state file)")
    parser.add_argument("--route", metavar="NAME", help="the route (of WEBHOOK_ROUTES) to use")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_PATH)
    args = parser.parse_args(argv)
    if not (args.list or args.rule):
        parser.error("give --list or --rule ID_OR_NAME")
    if args.trigger and not args.rule:
        parser.error("--trigger needs --rule")
    try:
        settings = Settings.from_env()
        rules = Rules(make_client(settings))
        if args.list:
            print(render_rules(rules.list()))
        if args.rule:
            state = State.load(args.state_file)
            url = args.url or state.url
            if not url:
                raise CliError(
                    ExitCode.MISSING_PREREQUISITE,
                    "no receiver URL: run `uv run scripts/deploy.py` first, or pass --url",
                )
            if args.route:
                url = route_url(url, settings, args.route)
            rule = rules.find(args.rule)
            headers = webhook_headers(state.current_secret, settings)
            changed = rules.connect(rule, url, headers)
            verb = "connected to" if changed else "already connected to"
            print(f"{url} {verb} rule {rule.get('display_name')!r} ({rule['id']})")
            if args.trigger:
                rules.trigger(rule)
                print("Rule triggered: a delivery should arrive within a minute.")
    except (LangSmithSetupError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.MISSING_PREREQUISITE
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
