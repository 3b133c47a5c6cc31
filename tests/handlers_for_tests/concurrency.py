"""Notes each attempt's start (TEST_CONCURRENCY_PATH) and takes CONCURRENCY_SECONDS: how
tests see whether two processes ever ran one handler of one delivery at the same time.

An attempt holds an exclusive lock on a file named for its delivery while it runs; an
attempt that finds the lock taken notes an overlap. A killed process's lock goes with it,
so a crash mid-attempt is never mistaken for an overlap.
"""

import asyncio
import fcntl
import os
from pathlib import Path

from pydantic import Field

from receiver import HandlerContext, HandlerOptions, RulePayload


class Options(HandlerOptions):
    path: Path = Field(validation_alias="TEST_CONCURRENCY_PATH")
    seconds: float = Field(0.5, validation_alias="CONCURRENCY_SECONDS")


def note(path: Path, event: str, context: HandlerContext) -> None:
    """One line, one write (O_APPEND: whole lines from any number of processes)."""
    with open(path, "a") as out:
        out.write(f"{event} {context.delivery_id} {context.attempt} {os.getpid()}\n")


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    path = context.options.path
    locks = path.with_name(path.name + ".locks")
    locks.mkdir(exist_ok=True)
    with open(locks / context.delivery_id, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note(path, "overlap", context)
        note(path, "start", context)
        await asyncio.sleep(context.options.seconds)


def _count(path: Path, event: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        if line.startswith(event + " "):
            delivery_id = line.split()[1]
            counts[delivery_id] = counts.get(delivery_id, 0) + 1
    return counts


def starts(path: Path) -> dict[str, int]:
    """Per delivery, how many attempts started."""
    return _count(path, "start")


def overlaps(path: Path) -> dict[str, int]:
    """Per delivery, how many attempts started while another was running."""
    return _count(path, "overlap")
