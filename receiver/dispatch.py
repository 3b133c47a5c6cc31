"""Running a delivery's handlers: isolation, retries with backoff, dead letters.

The same :class:`Dispatcher` runs inside Modal's ``process`` function and inside the local
server's background worker. Each handler runs independently of its siblings: one raising
does not stop the others, and a handler that already succeeded is never run again when a
sibling is retried. Every attempt is counted in the store before it starts, so a crash
mid-handler is retried when the delivery is picked up again.

Every attempt is also claimed (``owner`` and an expiry, in the same store write that counts
it) and the claim is renewed while the handler runs: two processes (the local worker and
``scripts/replay.py``, two ``process`` calls, a sweep and a replay on Modal) never run one
handler of one delivery at the same time. A process that finds a handler claimed leaves it
to its owner; a claim whose owner died expires after ``WEBHOOK_LEASE_SECONDS``.

    routes, handlers = load_configuration(settings)
    dispatcher = Dispatcher(store, handlers, settings, routes)
    record = await dispatcher.process(delivery_id)
    record.status  # DeliveryStatus.DONE
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from receiver.delivery import DeliveryRecord, DeliveryStatus, HandlerState, HandlerStatus
from receiver.registry import Handler, load_handlers
from receiver.routes import RouteTable, load_routes
from receiver.settings import HandlerOptions, Settings
from receiver.sources import SOURCES
from receiver.stores import DeliveryStore

log = logging.getLogger("receiver.dispatch")

# Namespace of the per-run keys handed to handlers (a fixed, random UUID: never change it,
# or every key a handler stored so far changes).
RUN_KEY_NAMESPACE = uuid.UUID("6f0f5f2e-8a7c-4a57-9d0e-6b1c2a3e4d5f")
MAX_ERROR_CHARS = 2000


class _DeliveryLogger(logging.LoggerAdapter):
    """Prefixes every message with the delivery id, so a handler's lines can be grepped."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"delivery={self.extra['delivery_id']} {msg}", kwargs


@dataclass(frozen=True)
class HandlerContext:
    """What a handler gets besides the payload: no globals needed.

    ``options`` is the handler's own ``Options``, read and checked at start-up (None when
    the module declares none). ``run_key(run.id)`` is a UUID that is the same on every
    redelivery and retry of a run for this handler; use it as the id of whatever the
    handler creates, so its side effects are idempotent too.
    """

    delivery_id: str
    handler: str
    attempt: int
    settings: Settings
    logger: logging.LoggerAdapter
    options: HandlerOptions | None = None

    def run_key(self, run_id: uuid.UUID | str, scope: str = "") -> uuid.UUID:
        """A stable UUID for (this handler, ``scope``, ``run_id``)."""
        return uuid.uuid5(RUN_KEY_NAMESPACE, f"{self.handler}\x1f{scope}\x1f{run_id}")


def new_owner() -> str:
    """A claim owner: ``host:pid:nonce`` (a process may tell a dead local owner by its pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"``, cut to a size that fits a store row and a log line."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


def load_configuration(settings: Settings) -> tuple[RouteTable, tuple[Handler, ...]]:
    """The routes in force and every handler they name, loaded and checked against each
    other (a route may only send a handler the sources its ``SOURCES`` lists).

    Raises :class:`~receiver.settings.SettingsError` or
    :class:`~receiver.registry.HandlerLoadError`: at start-up, never at a delivery.
    """
    routes = load_routes(settings, SOURCES)
    handlers = load_handlers(routes.handler_names)
    routes.check_handlers(handlers)
    return routes, handlers


class Dispatcher:
    """Runs the pending handlers of stored deliveries, recording every attempt."""

    def __init__(
        self,
        store: DeliveryStore,
        handlers: Sequence[Handler],
        settings: Settings,
        routes: RouteTable | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.handlers = {handler.name: handler for handler in handlers}
        self.settings = settings
        self.routes = routes or load_routes(settings, SOURCES)  # the settings' routes
        self._sleep = sleep
        self._threads: ThreadPoolExecutor | None = None
        self.owner = new_owner()

    async def process(self, delivery_id: str) -> DeliveryRecord | None:
        """Run every pending handler of ``delivery_id`` to success or to its last attempt.

        The edge checked only what its answer needed: the whole body is validated here as
        its sender's event, before any handler runs; each handler sees the runs its routes
        select.
        """
        record = await self.store.get(delivery_id)
        if record is None:
            log.error("delivery=%s not in the store; nothing to process", delivery_id)
            return None
        pending = [
            name for name, state in record.handlers.items() if state.status is HandlerStatus.PENDING
        ]
        if pending:
            event, error = await self._event(record)
            if event is None:
                steps = [self._give_up(delivery_id, name, error) for name in pending]
            else:
                steps = [
                    self._run(name, self._narrowed(record, name, event), delivery_id)
                    for name in pending
                ]
            # One handler (the common case) is awaited directly: no task to create.
            outcomes = [await steps[0]] if len(steps) == 1 else await asyncio.gather(*steps)
            if None in outcomes:  # some handler is another process's: what the store says
                return await self.store.get(delivery_id)
            record.handlers.update(zip(pending, outcomes, strict=True))
        if record.status is DeliveryStatus.DEAD:
            log.error(
                "delivery=%s dead: %s",
                delivery_id,
                "; ".join(
                    f"{name} failed after {state.attempts} attempts ({state.last_error})"
                    for name, state in record.handlers.items()
                    if state.status is HandlerStatus.FAILED
                ),
            )
        return record

    def close(self) -> None:
        """Stop the handler threads (waiting for the running ones); they restart on demand."""
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)

    async def _event(self, record: DeliveryRecord) -> tuple[BaseModel | None, str]:
        """The whole body validated as its sender's event, or why it is not one (a retry
        cannot fix that)."""
        source = SOURCES.get(record.source)
        if source is None:
            return None, f"source {record.source!r} is not known to this receiver"
        body = await self.store.body(record.id)
        try:
            return source.event.model_validate_json(body), ""
        except ValidationError as exc:
            return None, f"the body is not a valid {source.name} event: {describe_error(exc)}"

    def _narrowed(self, record: DeliveryRecord, handler: str, event: BaseModel) -> BaseModel:
        """The event as ``handler`` sees it: only the runs one of its matched routes keeps
        (all of them when no route of the delivery names it any more)."""
        routes = [
            route
            for name in record.routes
            if (route := self.routes.by_name.get(name)) and handler in route.handlers
        ]
        source = SOURCES[record.source]
        if not routes or any(source.keeps_every_run(route.match.conditions) for route in routes):
            return event  # a route without run conditions takes them all: nothing to narrow
        return source.narrow(event, lambda run: any(route.keeps_run(run) for route in routes))

    async def _claim(self, delivery_id: str, name: str) -> int | None:
        """Claim the next attempt (None: another process holds the handler, or it is done)."""
        until = time.time() + self.settings.lease_seconds
        attempt = await self.store.start_attempt(delivery_id, name, self.owner, until)
        if attempt is None:
            log.info("delivery=%s handler=%s claimed by another process", delivery_id, name)
        return attempt

    async def _give_up(self, delivery_id: str, name: str, error: str) -> HandlerState | None:
        attempt = await self._claim(delivery_id, name)
        if attempt is None:
            return None
        await self.store.finish_attempt(delivery_id, name, self.owner, error, final=True)
        return HandlerState(HandlerStatus.FAILED, attempt, error)

    async def _keep_claim(self, delivery_id: str, name: str) -> None:
        """Renew the claim every third of the lease while the handler runs."""
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not await self.store.renew(delivery_id, name, self.owner, time.time() + lease):
                log.error("delivery=%s handler=%s lost its claim while running", delivery_id, name)
                return

    async def _run(self, name: str, event: BaseModel, delivery_id: str) -> HandlerState | None:
        """Attempt one handler until it succeeds or runs out of attempts; its final state
        (None when another process holds it)."""
        handler = self.handlers.get(name)
        if handler is None:
            error = f"handler {name!r} is not configured any more (WEBHOOK_HANDLERS or routes)"
            log.error(
                "delivery=%s handler=%s outcome=failed error=%s",
                delivery_id,
                name,
                error,
            )
            return await self._give_up(delivery_id, name, error)
        logger = _DeliveryLogger(logging.getLogger(name), {"delivery_id": delivery_id})
        while True:
            attempt = await self._claim(delivery_id, name)
            if attempt is None:
                return None
            context = HandlerContext(
                delivery_id, name, attempt, self.settings, logger, handler.options
            )
            keeper = asyncio.create_task(self._keep_claim(delivery_id, name))
            try:
                error = await self._call(handler, event, context)
            finally:
                keeper.cancel()
            final = error is not None and attempt >= self.settings.max_attempts
            retry = error is not None and not final
            delay = self.settings.retry_delay(attempt) if retry else 0.0
            # During the backoff the claim is kept: the retry is this process's to make.
            hold = time.time() + delay + self.settings.lease_seconds if retry else None
            if not await self.store.finish_attempt(
                delivery_id, name, self.owner, error, final=final, hold_until=hold
            ):
                log.error(
                    "delivery=%s handler=%s attempt=%d outcome not recorded: its claim expired"
                    " and another process took the handler over",
                    delivery_id,
                    name,
                    attempt,
                )
                return None
            if error is None:
                log.info(
                    "delivery=%s handler=%s outcome=done attempt=%d",
                    delivery_id,
                    name,
                    attempt,
                )
                return HandlerState(HandlerStatus.DONE, attempt)
            if final:
                log.error(
                    "delivery=%s handler=%s outcome=failed attempt=%d error=%s",
                    delivery_id,
                    name,
                    attempt,
                    error,
                )
                return HandlerState(HandlerStatus.FAILED, attempt, error)
            log.warning(
                "delivery=%s handler=%s outcome=retry attempt=%d retry_in=%.1fs error=%s",
                delivery_id,
                name,
                attempt,
                delay,
                error,
            )
            await self._sleep(delay)

    async def _call(
        self, handler: Handler, event: BaseModel, context: HandlerContext
    ) -> str | None:
        """Run one attempt; return None on success, else the error's description."""
        try:
            if handler.is_async:
                await handler.handle(event, context)
            else:
                if self._threads is None:
                    self._threads = ThreadPoolExecutor(
                        self.settings.worker_concurrency, thread_name_prefix="handler"
                    )
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._threads, handler.handle, event, context)
        except Exception as exc:
            context.logger.exception(
                "handler %s raised on attempt %d", handler.name, context.attempt
            )
            return describe_error(exc)
        return None
