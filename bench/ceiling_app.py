"""The ceilings: FastAPI endpoints that do nothing with what they receive.

``POST /`` reads the body and answers 202: the least any webhook endpoint must do.
``POST /json`` also lets FastAPI parse the body as JSON (``data: dict``), as a typical
FastAPI webhook endpoint, the reference among them, does before any code of its own runs.
"""

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/")
async def noop(request: Request) -> Response:
    await request.body()
    return Response(status_code=202)


@app.post("/json", status_code=202)
async def noop_json(data: dict) -> None:
    return None
