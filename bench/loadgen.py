"""A small asyncio HTTP/1.1 load generator: N keep-alive connections, fixed duration.

Written on raw asyncio streams rather than an HTTP client library so that the client
spends as little CPU as possible on the same 2-core machine as the server.

    result = asyncio.run(load(port=8000, requests=make_request, concurrency=64, seconds=5))
    result.rps, result.p50_ms, result.p99_ms, result.errors
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99)


def post_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive POST."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def load(
    *,
    port: int,
    requests: Callable[[], bytes],
    concurrency: int,
    seconds: float,
    timeout: float = 5.0,
) -> LoadResult:
    """Send ``requests()`` on ``concurrency`` connections for ``seconds``; 2xx counts as ok."""
    result = LoadResult()
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader = writer = None
        while time.perf_counter() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                data = requests()
                started = time.perf_counter()
                writer.write(data)
                status = await asyncio.wait_for(_read_response(reader), timeout)
                if 200 <= status < 300:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.errors += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
