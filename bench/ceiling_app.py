"""The ceiling: a FastAPI endpoint that reads the body and does nothing else."""

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/")
async def noop(request: Request) -> Response:
    await request.body()
    return Response(status_code=202)
