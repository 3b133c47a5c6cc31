"""Benchmark this receiver against the documentation's reference endpoint, on this machine.

    uv run bench/run.py            # about 4 minutes on 2 cores; prints tables, writes JSON
    uv run bench/run.py --quick    # shorter runs, for a smoke test

Everything runs on 127.0.0.1: each app is served by uvicorn in its own process
(``bench/serve.py``), the LangSmith API emulator from ``tests/`` in another, and the load
comes from a small asyncio client in this process. Results: ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]
from loadgen import load, post_request  # noqa: E402

SECRET = "bench-secret-0123456789"
SAMPLE = json.loads((ROOT / "tests" / "data" / "langsmith_rule_payload.json").read_text())
PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
RESULTS = ROOT / "bench" / "results.json"
BENCH_ROUTES = ROOT / "bench" / "routes.toml"
COMPILED = ("receiver", "handlers", "webhook_app.py", "bench", "tests/support")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(app: str, env: dict[str, str] | None = None):
    """``bench/serve.py APP`` in its own process; yields (port, pid).

    A server that exits before it listens stops the benchmark with its error output.
    """
    port = free_port()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "serve.py"), app, "--port", str(port)],
            env={
                **os.environ,
                "LANGSMITH_TRACING": "false",
                "NO_PROXY": "127.0.0.1",
                **(env or {}),
            },
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            for _ in range(400):
                if process.poll() is not None:
                    errors.seek(0)
                    raise RuntimeError(f"{app} did not start:\n{errors.read().decode()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                        break
                except OSError:
                    time.sleep(0.05)
            yield port, process.pid
        finally:
            process.terminate()
            process.wait(10)


def payload(runs: int, *, text: int = 0) -> dict:
    """The sample body with ``runs`` runs (inputs padded to ``text`` characters each)."""
    body = copy.deepcopy(SAMPLE)
    template = body["runs"][0]
    body["runs"] = []
    for index in range(runs):
        run = copy.deepcopy(template)
        run["id"] = run["trace_id"] = str(uuid.UUID(int=index + 1))
        run["inputs"] = {"question": "q" * text or f"question {index}"}
        body["runs"].append(run)
    body["rule_id"] = PLACEHOLDER  # replaced per request: every body is a new delivery
    return body


def unique_requests(body: dict, path: str, headers: dict[str, str]):
    """A function returning a new request each call: same body, a fresh rule id."""
    raw = json.dumps(body).encode()
    head, tail = raw.split(PLACEHOLDER.encode())

    def make() -> bytes:
        return post_request(path, head + str(uuid.uuid4()).encode() + tail, headers)

    return make


def target(app: str) -> tuple[str, dict[str, str]]:
    """Path and headers each app takes its deliveries (and secret) on."""
    if app == "reference":
        return f"/?secret={SECRET}", {"Content-Type": "application/json"}
    path = "/json" if app == "ceiling-json" else "/"
    return path, {"Content-Type": "application/json", "X-Webhook-Secret": SECRET}


def ours_env(tmp: str, **extra: str) -> dict[str, str]:
    """Ours with the routes of ``bench/routes.toml``, whose handler does nothing
    (``bench/noop_handler.py``): the receiver alone, routing included."""
    routed = {} if "WEBHOOK_HANDLERS" in extra else {"WEBHOOK_ROUTES": str(BENCH_ROUTES)}
    return {
        "LS_WEBHOOK": SECRET,
        "WEBHOOK_STORE_PATH": str(Path(tmp) / f"{uuid.uuid4()}.sqlite3"),
        **routed,
        **extra,
    }


# --- 1. acknowledgement under load ------------------------------------------------------


def ack_under_load(tmp: str, emulator_url: str, seconds: float, rounds: int) -> list[dict]:
    """Requests/s per app and case: the median of ``rounds`` runs, the apps taking turns.

    Two cores are shared by the server, our worker process and the load generator, and a
    single 5 s run of the same app varies by 10-15 %; interleaving the apps and keeping the
    median run makes the ratios between them stable.
    """
    rows = []
    servers = {
        "ceiling": ("ceiling", {}),
        "ceiling-json": ("ceiling", {}),
        "ours": ("ours", ours_env(tmp)),
        "reference": (
            "reference",
            {
                "LS_WEBHOOK": SECRET,
                "LANGSMITH_ENDPOINT": emulator_url,
                "LANGSMITH_API_KEY": "bench",
            },
        ),
    }
    cases = {
        (1, 8): ("ceiling", "ours"),
        (1, 64): ("ceiling", "ceiling-json", "ours", "reference"),
        (500, 64): ("ceiling", "ceiling-json", "ours", "reference"),
    }
    for (runs, concurrency), apps in cases.items():
        body = payload(runs)
        results: dict[str, list] = {app: [] for app in apps}
        for _ in range(rounds):
            for app in apps:
                server, env = servers[app]
                requests = unique_requests(body, *target(app))
                with served(server, env) as (port, _):
                    warm_up = load(port=port, requests=requests, concurrency=concurrency, seconds=1)
                    asyncio.run(warm_up)
                    measured = load(
                        port=port, requests=requests, concurrency=concurrency, seconds=seconds
                    )
                    results[app].append(asyncio.run(measured))
        for app in apps:
            result = sorted(results[app], key=lambda each: each.rps)[len(results[app]) // 2]
            rows.append(
                {
                    "app": app,
                    "runs_per_body": runs,
                    "concurrency": concurrency,
                    "requests_per_s": round(result.rps, 1),
                    "p50_ms": round(result.p50_ms, 1),
                    "p99_ms": round(result.p99_ms, 1),
                    "errors": result.errors,
                    "ok": len(result.latencies),
                    "rounds": [round(each.rps) for each in results[app]],
                }
            )
            print(f"  ack {app:<12} {runs:>3} runs x{concurrency:<2}: {rows[-1]}", flush=True)
    return rows


# --- 2. end to end with LangSmith latency -----------------------------------------------


def end_to_end(tmp: str, emulator_url: str, quick: bool) -> list[dict]:
    rows = []
    # The emulator's admin routes take no key; its API (creating the reference's dataset)
    # refuses a request without one, as LangSmith does.
    admin = httpx.Client(base_url=emulator_url, timeout=30, headers={"x-api-key": "bench"})
    sizes = (1, 100) if quick else (1, 100, 1000)
    for app in ("ours", "reference"):
        for runs in sizes:
            dataset = f"bench-{app}-{runs}-{uuid.uuid4().hex[:6]}"
            admin.post("/_admin/reset")
            admin.post("/_admin/config", json={"latency": 0.0})
            body = payload(runs)
            body["rule_id"] = str(uuid.uuid4())
            admin.post(
                "/_admin/feedback",
                json=[
                    {"run_id": run["id"], "key": "correctness", "correction": {"answer": "fixed"}}
                    for run in body["runs"]
                ],
            )
            env = {
                "LANGSMITH_ENDPOINT": emulator_url,
                "LANGSMITH_API_KEY": "bench",
                "LS_DATASET_NAME": dataset,
            }
            if app == "ours":
                env = {**ours_env(tmp, WEBHOOK_HANDLERS="handlers.corrections_to_dataset"), **env}
            else:  # the docs' endpoint expects its dataset to exist already
                admin.post("/datasets", json={"name": dataset})
                env = {**env, "LS_WEBHOOK": SECRET}
            path, headers = target(app)
            with served(app, env) as (port, _):
                # LangSmith delivers to a server that is up: one second lets ours start
                # its parser process (a large body arriving as the server starts waits for
                # it: 0.1-0.3 s more, measured apart in docs/performance.md).
                time.sleep(1.0)
                before = admin.get("/_admin/stats").json()["api_calls"]
                admin.post("/_admin/config", json={"latency": 0.05})
                raw = json.dumps(body).encode()
                with httpx.Client(timeout=5.0) as sender:  # LangSmith's deadline
                    started = time.perf_counter()
                    try:
                        response = sender.post(
                            f"http://127.0.0.1:{port}{path}", content=raw, headers=headers
                        )
                        answered = response.status_code
                    except httpx.TimeoutException:
                        answered = None
                ack_s = time.perf_counter() - started
                cap = 60.0 if app == "ours" else 20.0
                examples = 0
                while time.perf_counter() - started < cap:
                    examples = admin.get("/_admin/stats", params={"dataset": dataset}).json()[
                        "examples"
                    ]
                    if examples >= runs:
                        break
                    time.sleep(0.05)
                done_s = time.perf_counter() - started
                calls = admin.get("/_admin/stats").json()["api_calls"] - before
                admin.post("/_admin/config", json={"latency": 0.0})
            rows.append(
                {
                    "app": app,
                    "runs": runs,
                    "answer": answered,
                    "answered_within_5s": answered is not None and ack_s < 5.0,
                    "ack_ms": round(ack_s * 1000, 1),
                    "examples": examples,
                    "all_examples_s": round(done_s, 2) if examples >= runs else None,
                    "api_calls": calls,
                    "observed_for_s": round(done_s, 1),
                }
            )
            print(f"  e2e {app:<9} {runs:>4} runs: {rows[-1]}", flush=True)
    return rows


# --- 3. cold start ----------------------------------------------------------------------


def cold_start(emulator_url: str, repeats: int) -> list[dict]:
    rows = []
    env = {
        **os.environ,
        "LS_WEBHOOK": SECRET,
        "LANGSMITH_ENDPOINT": emulator_url,
        "LANGSMITH_API_KEY": "bench",
        "LANGSMITH_TRACING": "false",
        "NO_PROXY": "127.0.0.1",
        # ours with every shipped handler: they are imported by the web function at start-up
        "WEBHOOK_HANDLERS": ",".join(
            f"handlers.{name}" for name in ("log_runs", "corrections_to_dataset", "notify_slack")
        ),
    }
    taken_by: dict[str, list[dict]] = {"ours": [], "reference": []}
    for _ in range(repeats):  # the apps take turns: a slow minute slows both, not one
        for app, taken in taken_by.items():
            out = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "coldstart.py"), app],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            taken.append(json.loads(out.strip().splitlines()[-1]))
    for app, samples in taken_by.items():
        imports = statistics.median(s["imports_ms"] for s in samples)
        first = statistics.median(s["first_request_ms"] for s in samples)
        rows.append(
            {
                "app": app,
                "imports_ms": round(imports, 1),
                "first_request_ms": round(first, 1),
                "total_ms": round(imports + first, 1),
                "status": samples[0]["status"],
            }
        )
        print(f"  cold {app:<9}: {rows[-1]}", flush=True)
    return rows


# --- 4. payload scale -------------------------------------------------------------------


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (ours: the worker process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


@contextmanager
def sampled_total_rss(pids: list[int], every: float = 0.002):
    """The highest sum of the processes' resident memory (KiB) seen while inside, sampled
    every ``every`` s: the memory they hold at the same moment. (Summing each process's
    own peak, VmHWM, adds peaks that never coincide: the parser's before the 202, the
    worker's after it.)"""
    highest, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            total = 0
            for each in pids:
                with contextlib.suppress(OSError, KeyError):
                    total += rss_kib(each, "VmRSS")
            highest[0] = max(highest[0], total)
            time.sleep(every)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield highest
    finally:
        done.set()
        sampler.join()


def payload_scale(tmp: str, repeats: int) -> list[dict]:
    rows = []
    sizes = [1_000, 100_000, 1_000_000, 10_000_000, 25_000_000]
    for size in sizes:
        runs = max(1, size // 10_000)
        text = max(1, (size - 2_000 * runs) // runs) if size >= 10_000 else 1
        acks, peaks = [], []
        with served("ours", ours_env(tmp)) as (port, pid):
            client = httpx.Client(timeout=30)
            client.get(f"http://127.0.0.1:{port}/healthz")
            time.sleep(2.0)  # the worker process has started
            pids = [pid, *children(pid)]  # the server, its worker and its parser process
            for _ in range(repeats):
                body = payload(runs, text=text)
                body["rule_id"] = str(uuid.uuid4())
                raw = json.dumps(body).encode()
                time.sleep(0.3)  # let the previous delivery's handler finish
                idle = sum(rss_kib(each, "VmRSS") for each in pids)
                with sampled_total_rss(pids) as highest:
                    started = time.perf_counter()
                    response = client.post(
                        f"http://127.0.0.1:{port}/", content=raw, headers=target("ours")[1]
                    )
                    acks.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 202, response.text
                    time.sleep(1.0 + size / 10_000_000)  # the worker parses it: include that
                peaks.append((highest[0] - idle) * 1024)
            client.close()
        peak = statistics.median(peaks)
        rows.append(
            {
                "body_bytes": len(raw),
                "runs": runs,
                "ack_ms": round(statistics.median(acks), 1),
                "peak_rss_above_idle_mb": round(peak / 1e6, 1),
                "peak_over_body": round(peak / len(raw), 2),
            }
        )
        print(f"  size {len(raw):>10} B: {rows[-1]}", flush=True)
    return rows


# --- report -----------------------------------------------------------------------------


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c))) for r in rows)) for c in columns]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append(
            "| "
            + " | ".join(str(row.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True))
            + " |"
        )
    return "\n".join(lines)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def paired_ratio(ours: list[float], peer: list[float]) -> float | None:
    """The median of round-by-round ratios: each round measures both apps within seconds of
    each other, so a machine that slows down for a while slows both (the median of each
    app's rounds, divided, swung by 20-40 % between runs on a shared 2-core machine)."""
    ratios = [a / b for a, b in zip(ours, peer, strict=True) if b]
    return round(statistics.median(ratios), 2) if ratios else None


def headline(results: dict) -> list[dict]:
    ack = {(r["app"], r["runs_per_body"], r["concurrency"]): r for r in results["ack_under_load"]}
    cold = {r["app"]: r for r in results["cold_start"]}
    rows = [
        {
            "metric": f"{runs}-run bodies, 64 senders: requests/s, ours / {peer}",
            "value": paired_ratio(ack["ours", runs, 64]["rounds"], ack[app, runs, 64]["rounds"]),
            "floor": ">= 0.7" if app == "ceiling-json" else "",
        }
        for runs in (1, 500)
        for app, peer in (
            ("ceiling-json", "FastAPI data: dict no-op"),
            ("ceiling", "bare no-op"),
            ("reference", "reference"),
        )
    ] + [
        {
            "metric": "1-run bodies, 8 senders: p99 ms (ours)",
            "value": ack["ours", 1, 8]["p99_ms"],
            "floor": "< 25",
        },
        {
            "metric": "cold start imports: reference / ours",
            "value": ratio(cold["reference"]["imports_ms"], cold["ours"]["imports_ms"]),
            "floor": ">= 2",
        },
        {
            "metric": "cold start imports ms (ours, no snapshot)",
            "value": cold["ours"]["imports_ms"],
            "floor": "< 500",
        },
    ]
    for row in results["end_to_end"]:
        if row["runs"] == 1000:
            rows.append(
                {
                    "metric": f"1,000 runs, {row['app']}: ack ms / API calls / all examples s",
                    "value": f"{row['ack_ms']} / {row['api_calls']} / {row['all_examples_s']}",
                    "floor": "< 250 / <= 30 / < 5" if row["app"] == "ours" else "",
                }
            )
    big = results["payload_scale"][-1]
    rows.append(
        {
            "metric": f"peak RSS over body, {big['body_bytes']:,} B body",
            "value": big["peak_over_body"],
            "floor": "< 4",
        }
    )
    return rows


def compile_bytecode() -> None:
    """Compile every installed package and our sources to ``.pyc``, as Modal's image build
    does (``uv_sync``/``pip_install`` pass ``--compile-bytecode``): a cold start measured on
    sources compiled at import time (``PYTHONDONTWRITEBYTECODE``, or a fresh ``uv sync``)
    would time the compiler, not the container."""
    targets = [sysconfig.get_path("purelib"), *(str(ROOT / name) for name in COMPILED)]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *targets], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 5.0
    started = time.perf_counter()
    results: dict = {
        "machine": machine(),
        "command": "uv run bench/run.py" + (" --quick" if args.quick else ""),
    }
    with tempfile.TemporaryDirectory() as tmp, served("emulator") as (emulator_port, _):
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        print("1. acknowledgement under load", flush=True)
        results["ack_under_load"] = ack_under_load(
            tmp, emulator_url, seconds, 1 if args.quick else 5
        )
        print("2. end to end with 50 ms LangSmith latency", flush=True)
        results["end_to_end"] = end_to_end(tmp, emulator_url, args.quick)
        print("3. cold start", flush=True)
        compile_bytecode()
        results["cold_start"] = cold_start(emulator_url, 3 if args.quick else 9)
        print("4. payload scale", flush=True)
        results["payload_scale"] = payload_scale(tmp, 2 if args.quick else 3)
    results["headline"] = headline(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']};"
        f" took {results['seconds']} s\n"
    )
    print(table(results["headline"], ["metric", "value", "floor"]), "\n")
    print(
        table(
            results["ack_under_load"],
            ["app", "runs_per_body", "concurrency", "requests_per_s", "p50_ms", "p99_ms", "errors"],
        ),
        "\n",
    )
    print(
        table(
            results["end_to_end"],
            [
                "app",
                "runs",
                "answer",
                "answered_within_5s",
                "ack_ms",
                "examples",
                "all_examples_s",
                "api_calls",
                "observed_for_s",
            ],
        ),
        "\n",
    )
    print(table(results["cold_start"], ["app", "imports_ms", "first_request_ms", "total_ms"]), "\n")
    print(
        table(
            results["payload_scale"],
            ["body_bytes", "runs", "ack_ms", "peak_rss_above_idle_mb", "peak_over_body"],
        )
    )
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
