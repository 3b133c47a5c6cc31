"""A faithful re-creation of the documentation's reference endpoint, for comparison only.

What the LangSmith docs show as a Modal web endpoint (there with ``Stub``/``web_endpoint``;
here the same body as a FastAPI route, which is what Modal serves): a ``data: dict`` body,
the secret compared with ``!=``, a ``langsmith.Client()`` made per request, feedback
listed for all runs, then runs and feedback paired by position and one ``create_example``
call per run, all before answering. Its flaws are the point of the benchmark: do not copy.
"""

import os

from fastapi import FastAPI, HTTPException, Query

app = FastAPI()


@app.post("/")
def f(data: dict, secret: str = Query(...)):
    from langsmith import Client

    if secret != os.environ["LS_WEBHOOK"]:
        raise HTTPException(status_code=401, detail="Incorrect bearer token")
    runs = data["runs"]
    ls_client = Client()
    ids = [r["id"] for r in runs]
    feedback = list(ls_client.list_feedback(run_ids=ids))
    for r, fb in zip(runs, feedback, strict=False):
        try:
            ls_client.create_example(
                inputs=r["inputs"],
                outputs={"output": fb.correction},
                dataset_name=os.environ.get("LS_DATASET_NAME", "classifier-github-issues"),
            )
        except Exception as exc:
            raise ValueError(f"{r} and {fb}") from exc
    return "success!"
