"""Notes when each attempt starts and ends (TEST_CONCURRENCY_PATH), taking CONCURRENCY_SECONDS
in between: how tests see whether two processes ever ran one handler of a delivery at once."""

import asyncio
import os
from pathlib import Path

from pydantic import Field

from receiver import HandlerContext, HandlerOptions, RulePayload


class Options(HandlerOptions):
    path: Path = Field(validation_alias="TEST_CONCURRENCY_PATH")
    seconds: float = Field(0.5, validation_alias="CONCURRENCY_SECONDS")


def note(context: HandlerContext, event: str) -> None:
    """One line, one write (O_APPEND: whole lines from any number of processes)."""
    line = f"{event} {context.delivery_id} {context.attempt} {os.getpid()}\n"
    with open(context.options.path, "a") as out:
        out.write(line)


async def handle(payload: RulePayload, context: HandlerContext) -> None:
    note(context, "start")
    await asyncio.sleep(context.options.seconds)
    note(context, "end")


def most_at_once(path: Path) -> dict[str, int]:
    """Per delivery, the most attempts that were running at the same time."""
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        event, delivery_id, _, _ = line.split()
        running[delivery_id] = running.get(delivery_id, 0) + (1 if event == "start" else -1)
        most[delivery_id] = max(most.get(delivery_id, 0), running[delivery_id])
    return most


def starts(path: Path) -> dict[str, int]:
    """Per delivery, how many attempts started."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines() if path.exists() else ():
        if line.startswith("start "):
            delivery_id = line.split()[1]
            counts[delivery_id] = counts.get(delivery_id, 0) + 1
    return counts
