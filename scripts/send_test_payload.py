"""Send a realistic LangSmith webhook body to a receiver and print status and latency.

    uv run scripts/send_test_payload.py "http://127.0.0.1:8000/?secret=..."
    uv run scripts/send_test_payload.py http://127.0.0.1:8000/ --header   # secret from LS_WEBHOOK
    uv run scripts/send_test_payload.py "http://127.0.0.1:8000/?secret=..." --source alert
    uv run scripts/send_test_payload.py http://127.0.0.1:8000/events --source engine --sign whsec

The body is the ``--source`` sender's example under ``tests/data/`` (LangSmith's documented
examples; ``rule``, the default, is a body LangSmith sent), or for rules ``--runs N`` copies
of its run with fresh ids. ``--sign SECRET`` adds ``X-LangSmith-Signature`` as LangSmith
signs Engine and Context Hub events. Exit code 0 when the answer is 2xx.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from receiver.auth import SIGNATURE_HEADER, sign

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
EXAMPLES = {
    "rule": "langsmith_rule_payload.json",
    "alert": "alert_threshold.json",
    "prompt_commit": "prompt_commit.json",
    "engine": "engine_issue_created.json",
    "context_hub": "context_hub_commit_created.json",
    "agent_run": "agent_server_run.json",
}


def build_body(runs: int | None, source: str = "rule") -> bytes:
    """The source's example body, byte for byte; for a rule with ``runs``, that many runs
    made from its first run with new ids."""
    example = DATA / EXAMPLES[source]
    if runs is None:
        return example.read_bytes()
    payload = json.loads(example.read_text())
    if runs is not None:
        template = payload["runs"][0]
        payload["runs"] = []
        for _ in range(runs):
            run = copy.deepcopy(template)
            run["id"] = run["trace_id"] = str(uuid.uuid4())
            payload["runs"].append(run)
    return json.dumps(payload).encode()


def move_secret_to_header(url: str, secret: str | None) -> tuple[str, dict[str, str]]:
    """Take ``secret`` out of the URL's query (or from ``secret``) and into the header."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    secret = query.pop("secret", None) or secret
    if not secret:
        raise SystemExit("error: --header needs the secret in the URL or in LS_WEBHOOK")
    stripped = urlunsplit(parts._replace(query=urlencode(query)))
    return stripped, {"X-Webhook-Secret": secret}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the receiver URL, with ?secret=... unless --header is used")
    parser.add_argument("--source", choices=list(EXAMPLES), default="rule", help="which sender")
    parser.add_argument("--runs", type=int, help="a rule with a synthetic batch of N runs")
    parser.add_argument("--sign", metavar="SECRET", help=f"add {SIGNATURE_HEADER} under SECRET")
    parser.add_argument(
        "--header", action="store_true", help="send the secret in the X-Webhook-Secret header"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (LangSmith's: 5)")
    args = parser.parse_args(argv)
    if args.runs is not None and args.source != "rule":
        parser.error("--runs applies to --source rule only")

    url, headers = args.url, {"Content-Type": "application/json"}
    if args.header:
        first_secret = (os.environ.get("LS_WEBHOOK") or "").split(",")[0].strip()
        url, secret_header = move_secret_to_header(url, first_secret)
        headers.update(secret_header)
    body = build_body(args.runs, args.source)
    if args.sign:
        headers[SIGNATURE_HEADER] = sign(body, args.sign)
    try:
        with httpx.Client(timeout=args.timeout) as client:  # built before the clock starts
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"{response.status_code} in {elapsed_ms:.1f} ms ({len(body)} bytes sent)")
    print(response.text)
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
