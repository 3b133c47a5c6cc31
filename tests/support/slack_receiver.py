"""A local stand-in for a Slack incoming webhook: records posts, can answer 429 or 5xx first."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, Response

from support.live_server import uvicorn_in_thread


@dataclass
class SlackReceiver:
    url: str = ""
    posts: list[dict] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def answer_next(self, status: int, **headers: str) -> None:
        """Make the next post answer ``status`` (with ``headers``) instead of 200."""
        self.answers.append((status, headers))

    def build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/services/T000/B000/XXXX")
        async def incoming(request: Request) -> Response:
            if self.answers:
                status, headers = self.answers.pop(0)
                return Response("rate_limited", status, headers=headers)
            self.posts.append(await request.json())
            return Response("ok", 200)

        return app


@contextmanager
def running_slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    with uvicorn_in_thread(receiver.build_app()) as url:
        receiver.url = f"{url}services/T000/B000/XXXX"
        yield receiver
