"""Running a delivery's handlers: isolation, retries with backoff, dead letters.

The same :class:`Dispatcher` runs inside Modal's ``process`` function and inside the local
server's background worker. Each handler runs independently of its siblings: one raising
does not stop the others, and a handler that already succeeded is never run again when a
sibling is retried. Every attempt is counted in the store before it starts, so a crash
mid-handler is retried when the delivery is picked up again.

    dispatcher = Dispatcher(store, load_handlers(settings.handlers), settings)
    record = await dispatcher.process(delivery_id)
    record.status  # DeliveryStatus.DONE
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from receiver.delivery import DeliveryRecord, DeliveryStatus, HandlerState, HandlerStatus
from receiver.registry import Handler
from receiver.settings import HandlerOptions, Settings
from receiver.sources import RulePayload
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


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"``, cut to a size that fits a store row and a log line."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


class Dispatcher:
    """Runs the pending handlers of stored deliveries, recording every attempt."""

    def __init__(
        self,
        store: DeliveryStore,
        handlers: Sequence[Handler],
        settings: Settings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.handlers = {handler.name: handler for handler in handlers}
        self.settings = settings
        self._sleep = sleep
        self._threads: ThreadPoolExecutor | None = None

    async def process(self, delivery_id: str) -> DeliveryRecord | None:
        """Run every pending handler of ``delivery_id`` to success or to its last attempt.

        The edge checked only what its answer needed: the whole body is validated here,
        before any handler runs.
        """
        record = await self.store.get(delivery_id)
        if record is None:
            log.error("delivery=%s not in the store; nothing to process", delivery_id)
            return None
        pending = [
            name for name, state in record.handlers.items() if state.status is HandlerStatus.PENDING
        ]
        if pending:
            payload, error = await self._payload(delivery_id)
            if payload is None:
                steps = [self._give_up(delivery_id, name, error) for name in pending]
            else:
                steps = [self._run(name, payload, delivery_id) for name in pending]
            # One handler (the common case) is awaited directly: no task to create.
            outcomes = [await steps[0]] if len(steps) == 1 else await asyncio.gather(*steps)
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

    async def _payload(self, delivery_id: str) -> tuple[RulePayload | None, str]:
        """The whole body validated, or why it is no rule payload (a retry cannot fix that)."""
        body = await self.store.body(delivery_id)
        try:
            return RulePayload.model_validate_json(body), ""
        except ValidationError as exc:
            return None, f"the body is not a valid rule payload: {describe_error(exc)}"

    async def _give_up(self, delivery_id: str, name: str, error: str) -> HandlerState:
        attempt = await self.store.start_attempt(delivery_id, name)
        await self.store.finish_attempt(delivery_id, name, error, final=True)
        return HandlerState(HandlerStatus.FAILED, attempt, error)

    async def _run(self, name: str, payload: RulePayload, delivery_id: str) -> HandlerState:
        """Attempt one handler until it succeeds or runs out of attempts; its final state."""
        handler = self.handlers.get(name)
        if handler is None:
            error = f"handler {name!r} is not configured in WEBHOOK_HANDLERS any more"
            log.error(
                "delivery=%s handler=%s outcome=failed error=%s",
                delivery_id,
                name,
                error,
            )
            return await self._give_up(delivery_id, name, error)
        logger = _DeliveryLogger(logging.getLogger(name), {"delivery_id": delivery_id})
        while True:
            attempt = await self.store.start_attempt(delivery_id, name)
            context = HandlerContext(
                delivery_id, name, attempt, self.settings, logger, handler.options
            )
            error = await self._call(handler, payload, context)
            final = error is not None and attempt >= self.settings.max_attempts
            await self.store.finish_attempt(delivery_id, name, error, final=final)
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
            delay = self.settings.retry_delay(attempt)
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
        self, handler: Handler, payload: RulePayload, context: HandlerContext
    ) -> str | None:
        """Run one attempt; return None on success, else the error's description."""
        try:
            if handler.is_async:
                await handler.handle(payload, context)
            else:
                if self._threads is None:
                    self._threads = ThreadPoolExecutor(
                        self.settings.worker_concurrency, thread_name_prefix="handler"
                    )
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._threads, handler.handle, payload, context)
        except Exception as exc:
            context.logger.exception(
                "handler %s raised on attempt %d", handler.name, context.attempt
            )
            return describe_error(exc)
        return None
