"""handlers/remote_evaluator.py with the real langsmith SDK against the local emulator."""

import asyncio
import logging
import threading
import uuid
from pathlib import Path

import pytest
from handlers_for_tests import evaluators as test_evaluators
from support.langsmith_emulator import running_emulator
from support.payloads import payload_with_runs

from handlers import remote_evaluator
from receiver import testing
from receiver.registry import HandlerLoadError, load_handlers
from receiver.sources import RulePayload

EVALUATOR = "handlers_for_tests.evaluators:constant"


@pytest.fixture
def emulator():
    test_evaluators.reset()
    with running_emulator() as emulator:
        yield emulator


def run_handler(emulator, payload: dict, *, attempt: int = 1, **env: str) -> None:
    env = {
        "LANGSMITH_API_KEY": "lsv2_test_key",
        "LANGSMITH_ENDPOINT": emulator.api_url,
        "REMOTE_EVALUATORS": EVALUATOR,
        **env,
    }
    context = testing.context(remote_evaluator, env, attempt=attempt, delivery_id="d-1")
    asyncio.run(remote_evaluator.handle(RulePayload.model_validate(payload), context))


def api_calls(emulator) -> list:
    return [call for call in emulator.requests if not call[1].startswith("/_admin")]


def test_100_runs_make_100_feedback_entries_with_one_call_each_plus_a_constant(emulator):
    payload = payload_with_runs(100, inputs={"q": 1}, outputs={"answer": "a"})
    run_handler(emulator, payload)
    assert len(emulator.feedback) == 100
    assert {f["run_id"] for f in emulator.feedback} == {run["id"] for run in payload["runs"]}
    posts = emulator.calls("POST", "/feedback")
    assert len(posts) == 100
    # /info once, then one GET /feedback for the 100 runs: the rest is one POST per entry.
    assert len(api_calls(emulator)) <= len(posts) + 2, api_calls(emulator)


def test_the_same_delivery_replayed_creates_no_more_feedback(emulator):
    payload = payload_with_runs(20, inputs={"q": 1}, outputs={"answer": "a"})
    run_handler(emulator, payload)
    before = [dict(f) for f in emulator.feedback]
    emulator.requests.clear()
    run_handler(emulator, payload)  # a replay: attempt 1 again, every run evaluated again
    assert emulator.feedback == before
    assert api_calls(emulator) == emulator.calls("GET", "/feedback")  # one listing, no write
    assert len(api_calls(emulator)) == 1
    assert len(test_evaluators.calls) == 40


def test_a_changed_result_on_replay_updates_the_feedback_in_place(emulator):
    payload = payload_with_runs(3, inputs={"q": 1}, outputs={"answer": "a"})
    run_handler(emulator, payload)
    test_evaluators.score["value"] = 0.5  # the evaluator was fixed, then the delivery replayed
    run_handler(emulator, payload)
    assert len(emulator.feedback) == 3
    assert {f["score"] for f in emulator.feedback} == {0.5}
    assert len(emulator.calls("PATCH", "/feedback/")) == 3


def test_feedback_ids_come_from_run_and_key_and_say_who_wrote_them(emulator):
    payload = payload_with_runs(1, inputs={"q": 1}, outputs={"answer": "a"})
    run = payload["runs"][0]
    run_handler(emulator, payload)
    [feedback] = emulator.feedback
    context = testing.context(remote_evaluator, {"REMOTE_EVALUATORS": EVALUATOR})
    assert feedback["id"] == str(context.run_key(run["id"], scope="quality"))
    assert feedback["key"] == "quality" and feedback["score"] == 1.0
    assert feedback["comment"] == "steady"
    assert feedback["session_id"] == run["session_id"]
    assert feedback["feedback_source"]["type"] == "model"
    metadata = feedback["feedback_source"]["metadata"]
    assert metadata == {"evaluator": EVALUATOR, "delivery_id": "d-1", "results": 1}


def test_async_evaluators_returning_several_results_in_any_shape(emulator):
    payload = payload_with_runs(2, inputs={"question": "q?"}, outputs={"answer": "a"})
    run_handler(emulator, payload, REMOTE_EVALUATORS="handlers_for_tests.evaluators:several")
    by_key = {}
    for feedback in emulator.feedback:
        by_key.setdefault(feedback["key"], []).append(feedback)
    assert {key: len(items) for key, items in by_key.items()} == {
        "relevance": 2,
        "label": 2,
        "fix": 2,
    }
    assert by_key["relevance"][0]["score"] == 0.1235  # what LangSmith stores: 4 decimals
    assert by_key["label"][0]["value"] == "good"
    assert by_key["fix"][0]["correction"] == {"answer": "q?"}
    emulator.requests.clear()
    run_handler(emulator, payload, REMOTE_EVALUATORS="handlers_for_tests.evaluators:several")
    assert not emulator.calls("POST", "/feedback") and not emulator.calls("PATCH")


def test_an_evaluator_failing_on_one_run_fails_the_attempt_and_the_retry_redoes_only_it(
    emulator, caplog
):
    payload = payload_with_runs(5, inputs={"q": 1}, outputs={"answer": "a"})
    broken = payload["runs"][2]["id"]
    test_evaluators.fail_for.add(broken)
    with pytest.raises(RuntimeError, match=f"1 evaluation\\(s\\) failed; first: run {broken}"):
        run_handler(emulator, payload)
    assert len(emulator.feedback) == 4  # the others are written before the attempt fails
    test_evaluators.fail_for.clear()
    test_evaluators.calls.clear()
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload, attempt=2)
    assert test_evaluators.calls == [broken]
    assert len(emulator.feedback) == 5
    assert "created=1 done_before=4" in caplog.text


def test_an_evaluator_that_hangs_is_cut_off_and_fails_the_attempt(emulator):
    payload = payload_with_runs(1, inputs={"q": 1}, outputs={"answer": "a"})
    with pytest.raises(RuntimeError, match=r"no result within 0\.2 s"):
        run_handler(
            emulator,
            payload,
            REMOTE_EVALUATORS="handlers_for_tests.evaluators:hangs",
            REMOTE_EVALUATOR_TIMEOUT_SECONDS="0.2",
        )


def test_a_result_without_a_key_fails_the_attempt_naming_the_evaluator(emulator):
    payload = payload_with_runs(1, inputs={"q": 1}, outputs={"answer": "a"})
    with pytest.raises(RuntimeError, match="not_feedback: ValidationError"):
        run_handler(
            emulator, payload, REMOTE_EVALUATORS="handlers_for_tests.evaluators:not_feedback"
        )
    assert emulator.feedback == []


def test_runs_behind_presigned_urls_are_fetched_before_evaluation(emulator):
    payload = payload_with_runs(2, inputs=None, outputs=None)
    with_url, without = payload["runs"]
    with_url["inputs_s3_urls"] = {
        "ROOT": {"presigned_url": emulator.add_blob("in", {"question": "from blob"})}
    }
    emulator.add_run({**with_url, "outputs": {"answer": "stored"}})  # read through the SDK
    emulator.add_run({**without, "inputs": {"question": "stored"}, "outputs": None})
    run_handler(emulator, payload, REMOTE_EVALUATORS="handlers_for_tests.evaluators:several")
    fixes = {f["run_id"]: f["correction"] for f in emulator.feedback if f["key"] == "fix"}
    assert fixes == {with_url["id"]: {"answer": "from blob"}, without["id"]: {"answer": "stored"}}


def test_a_run_langsmith_does_not_have_is_skipped_with_the_reason(emulator, caplog):
    payload = payload_with_runs(2, inputs=None, outputs={"answer": "a"})
    emulator.add_run({**payload["runs"][0], "inputs": {"q": 1}})
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert len(emulator.feedback) == 1
    assert "skipped=1 [1x no inputs in the body and no presigned URL, and LangSmith" in caplog.text


def test_runs_wait_for_required_feedback_and_those_never_scored_are_skipped(emulator, caplog):
    payload = payload_with_runs(3, inputs={"q": 1}, outputs={"answer": "a"})
    ready, late, never = (run["id"] for run in payload["runs"])
    emulator.add_feedback(ready, "correctness", score=1)
    timer = threading.Timer(1.5, emulator.add_feedback, (late, "correctness"), {"score": 0})
    timer.start()
    with caplog.at_level(logging.INFO):
        run_handler(
            emulator,
            payload,
            REMOTE_EVALUATOR_REQUIRES_FEEDBACK="correctness",
            REMOTE_EVALUATOR_WAIT_SECONDS="4",
        )
    timer.join()
    assert sorted(test_evaluators.calls) == sorted([ready, late])
    assert never not in {f["run_id"] for f in emulator.feedback if f["key"] == "quality"}
    assert "[1x no correctness feedback after 4 s]" in caplog.text
    # the re-checks asked only for the runs still lacking it
    rechecks = [query for _, _, query in emulator.calls("GET", "/feedback")[1:]]
    assert rechecks and all(ready not in query for query in rechecks)


def test_the_shipped_evaluator_works_out_of_the_box(emulator):
    payload = payload_with_runs(2, inputs={"q": 1}, outputs={"answer": "a"})
    payload["runs"][1]["outputs"] = {"answer": ""}
    env = {"LANGSMITH_API_KEY": "k", "LANGSMITH_ENDPOINT": emulator.api_url}
    context = testing.context(remote_evaluator, env)
    asyncio.run(remote_evaluator.handle(RulePayload.model_validate(payload), context))
    scores = {f["run_id"]: (f["key"], f["score"]) for f in emulator.feedback}
    assert scores == {
        payload["runs"][0]["id"]: ("has_output", 1),
        payload["runs"][1]["id"]: ("has_output", 0),
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("evaluators.examples.has_output", "REMOTE_EVALUATORS"),
        ("acme_evals.judge:score", "module 'acme_evals.judge' of evaluator"),
    ],
)
def test_a_bad_evaluator_reference_stops_the_start_naming_it(value, message):
    with pytest.raises(HandlerLoadError, match=message):
        load_handlers(["handlers.remote_evaluator"], {"REMOTE_EVALUATORS": value})


def test_the_emulator_refuses_feedback_langsmith_would_refuse(emulator):
    import httpx

    key = {"x-api-key": "k"}
    feedback = {"id": str(uuid.uuid4()), "run_id": str(uuid.uuid4()), "key": "k", "score": 1}
    assert httpx.post(f"{emulator.api_url}/feedback", json=feedback, headers=key).is_success
    again = httpx.post(f"{emulator.api_url}/feedback", json=feedback, headers=key)
    assert again.status_code == 409
    precise = {**feedback, "id": str(uuid.uuid4()), "score": 0.123456}
    assert httpx.post(f"{emulator.api_url}/feedback", json=precise, headers=key).status_code == 422
    missing = f"{emulator.api_url}/feedback/{uuid.uuid4()}"
    assert httpx.patch(missing, json={"score": 1}, headers=key).status_code == 404


def test_the_readme_evaluator_works_as_written(emulator, tmp_path, monkeypatch):
    """README promises an evaluator in under 20 lines: run exactly that code."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("# my_evals.py")[1].split("```")[0].split("\n", 1)[1]
    assert len(code.strip().splitlines()) < 20
    (tmp_path / "my_evals.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    payload = payload_with_runs(2, inputs={"q": 1}, outputs={"answer": "short"})
    payload["runs"][1]["outputs"] = {"answer": ""}
    run_handler(emulator, payload, REMOTE_EVALUATORS="my_evals:concise")
    assert sorted((f["key"], f["score"], f["comment"]) for f in emulator.feedback) == [
        ("concise", 0, "0 characters"),
        ("concise", 1, "5 characters"),
    ]
