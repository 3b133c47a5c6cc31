"""Send the sample LangSmith rule payload to a receiver and print status and latency.

    uv run scripts/send_test_payload.py "http://127.0.0.1:8000/?secret=..."
    uv run scripts/send_test_payload.py http://127.0.0.1:8000/ --header   # secret from LS_WEBHOOK

The body is ``tests/data/langsmith_rule_payload.json`` (a body LangSmith sent), or
``--runs N`` copies of its run with fresh ids. Exit code 0 when the answer is 2xx.
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

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "langsmith_rule_payload.json"


def build_body(runs: int | None) -> bytes:
    """The sample body, or one with ``runs`` runs made from its first run with new ids."""
    payload = json.loads(SAMPLE.read_text())
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
    parser.add_argument("--runs", type=int, help="send a synthetic batch of N runs")
    parser.add_argument(
        "--header", action="store_true", help="send the secret in the X-Webhook-Secret header"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (LangSmith's: 5)")
    args = parser.parse_args(argv)

    url, headers = args.url, {"Content-Type": "application/json"}
    if args.header:
        first_secret = (os.environ.get("LS_WEBHOOK") or "").split(",")[0].strip()
        url, secret_header = move_secret_to_header(url, first_secret)
        headers.update(secret_header)
    body = build_body(args.runs)
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
