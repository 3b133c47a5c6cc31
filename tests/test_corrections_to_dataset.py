"""handlers/corrections_to_dataset.py with the real langsmith SDK against the local emulator."""

import json
import logging
import uuid

import pytest
from conftest import HEADER, drain
from support.langsmith_emulator import running_emulator
from support.payloads import payload_with_runs

from handlers import corrections_to_dataset
from receiver import testing
from receiver.delivery import DeliveryStatus
from receiver.sources import RulePayload

DATASET = "corrections-under-test"


@pytest.fixture(params=["json", "multipart"])
def emulator(request):
    """The emulated LangSmith, once with each example write path the SDK takes: JSON
    (`/examples/bulk`), and multipart, when `/info` says the instance has it."""
    with running_emulator() as emulator:
        emulator.multipart = request.param == "multipart"
        yield emulator


def langsmith_env(emulator, **env: str) -> dict[str, str]:
    return {
        "LANGSMITH_API_KEY": "lsv2_test_key",
        "LANGSMITH_ENDPOINT": emulator.api_url,
        "LS_DATASET_NAME": DATASET,
        **env,
    }


def run_handler(emulator, payload: dict, **env: str) -> None:
    context = testing.context(corrections_to_dataset, langsmith_env(emulator, **env))
    corrections_to_dataset.handle(RulePayload.model_validate(payload), context)


def corrected_payload(count: int, emulator, **run_fields) -> dict:
    payload = payload_with_runs(
        count, inputs={"question": "q"}, outputs={"answer": "wrong"}, **run_fields
    )
    for run in payload["runs"]:
        emulator.add_feedback(run["id"], "correctness", correction={"answer": f"fixed {run['id']}"})
    return payload


def test_feedback_is_matched_to_runs_by_id_never_by_position(emulator):
    payload = payload_with_runs(3, outputs={"answer": "model"})
    a, b, c = (run["id"] for run in payload["runs"])
    for run, question in zip(payload["runs"], "ABC", strict=True):
        run["inputs"] = {"question": question}
    # Stored in an order that positional pairing would get wrong: C first, B has none,
    # A has two corrections of which the newer must win.
    emulator.add_feedback(
        c, "correctness", correction={"answer": "C fixed"}, created_at="2024-01-01T00:00:00+00:00"
    )
    emulator.add_feedback(
        a, "correctness", correction={"answer": "A old"}, created_at="2024-01-01T00:00:00+00:00"
    )
    emulator.add_feedback(
        a, "correctness", correction={"answer": "A new"}, created_at="2024-02-01T00:00:00+00:00"
    )
    emulator.add_feedback(b, "helpfulness", score=1)
    run_handler(emulator, payload)
    examples = {e["source_run_id"]: e for e in emulator.examples_in(DATASET)}
    assert set(examples) == {a, c}
    assert examples[a]["inputs"] == {"question": "A"}
    assert examples[a]["outputs"] == {"answer": "A new"}
    assert examples[c]["outputs"] == {"answer": "C fixed"}
    assert examples[a]["metadata"]["feedback_key"] == "correctness"
    assert examples[a]["metadata"]["rule_id"] == payload["rule_id"]


def test_a_string_correction_becomes_an_output_field(emulator):
    payload = payload_with_runs(1, inputs={"q": 1})
    emulator.add_feedback(payload["runs"][0]["id"], "note", correction="the right answer")
    run_handler(emulator, payload)
    [example] = emulator.examples_in(DATASET)
    assert example["outputs"] == {"output": "the right answer"}


def test_only_the_configured_feedback_keys_count(emulator):
    payload = payload_with_runs(2, inputs={"q": 1})
    first, second = (run["id"] for run in payload["runs"])
    emulator.add_feedback(first, "correctness", correction={"a": 1})
    emulator.add_feedback(second, "style", correction={"a": 2})
    run_handler(emulator, payload, CORRECTIONS_FEEDBACK_KEYS="correctness")
    assert [e["source_run_id"] for e in emulator.examples_in(DATASET)] == [first]
    assert all("key=correctness" in query for _, _, query in emulator.calls("GET", "/feedback"))


def test_runs_scored_at_the_threshold_become_examples_with_their_own_outputs(emulator):
    payload = payload_with_runs(3, inputs={"q": 1}, outputs={"answer": "model"})
    high, exact, low = (run["id"] for run in payload["runs"])
    emulator.add_feedback(high, "user_score", score=1.0)
    emulator.add_feedback(exact, "user_score", score=0.8)
    emulator.add_feedback(low, "user_score", score=0.2)
    run_handler(emulator, payload)  # off by default
    assert emulator.examples_in(DATASET) == []
    run_handler(
        emulator, payload, CORRECTIONS_SCORE_KEY="user_score", CORRECTIONS_SCORE_THRESHOLD="0.8"
    )
    examples = {e["source_run_id"]: e for e in emulator.examples_in(DATASET)}
    assert set(examples) == {high, exact}
    assert examples[high]["outputs"] == {"answer": "model"}


def test_inputs_and_outputs_come_from_presigned_urls_when_null(emulator):
    payload = payload_with_runs(1)
    run = payload["runs"][0]
    run["inputs_s3_urls"] = {
        "ROOT": {"presigned_url": emulator.add_blob("in", {"question": "big"})}
    }
    emulator.add_feedback(run["id"], "correctness", correction={"answer": "ok"})
    run_handler(emulator, payload)
    [example] = emulator.examples_in(DATASET)
    assert example["inputs"] == {"question": "big"}


def test_an_expired_presigned_url_is_read_through_the_sdk_instead(emulator, caplog):
    """The run was dropped while the handler reported success: a replay never got it back."""
    payload = corrected_payload(2, emulator)
    expired = payload["runs"][0]
    emulator.add_run({**expired, "inputs": {"question": "from LangSmith"}})
    expired["inputs"] = None
    expired["inputs_s3_urls"] = {
        "ROOT": {"presigned_url": emulator.add_blob("old", {}, expired=True)}
    }
    run_handler(emulator, payload)
    examples = {e["source_run_id"]: e for e in emulator.examples_in(DATASET)}
    assert examples[expired["id"]]["inputs"] == {"question": "from LangSmith"}
    assert emulator.calls("GET", f"/runs/{expired['id']}")
    assert len(examples) == 2


def test_a_run_without_data_is_read_through_the_sdk_once_for_both_fields(emulator):
    """The docs' own sample payload has neither inline data nor URLs."""
    payload = payload_with_runs(1, inputs=None, outputs=None)
    run = payload["runs"][0]
    emulator.add_run({**run, "inputs": {"q": "stored"}, "outputs": {"a": "stored"}})
    emulator.add_feedback(run["id"], "correctness", correction={"score": 1})  # no output
    emulator.add_feedback(run["id"], "user_score", score=1.0)
    run_handler(
        emulator, payload, CORRECTIONS_SCORE_KEY="user_score", CORRECTIONS_SCORE_THRESHOLD="1"
    )
    [example] = emulator.examples_in(DATASET)
    assert (example["inputs"], example["outputs"]) == ({"q": "stored"}, {"a": "stored"})
    assert len(emulator.calls("GET", "/runs/")) == 1


def test_a_run_langsmith_no_longer_has_is_skipped_and_counted(emulator, caplog):
    payload = corrected_payload(2, emulator)
    payload["runs"][0]["inputs"] = None
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert len(emulator.examples_in(DATASET)) == 1
    assert "no inputs in the body and no presigned URL, and LangSmith has no run" in caplog.text
    assert "created=1" in caplog.text and "skipped=1" in caplog.text


def test_langsmith_failing_to_read_a_run_fails_the_attempt_so_it_is_retried(emulator):
    payload = corrected_payload(1, emulator)
    payload["runs"][0]["inputs"] = None
    emulator.add_run({**payload["runs"][0], "inputs": {"q": 1}})
    emulator.fail("/runs/", 500, times=20)
    with pytest.raises(Exception, match="500"):
        run_handler(emulator, payload)
    assert emulator.examples_in(DATASET) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam",  # a cloud metadata service
        "https://internal.example/blob",
        "https://ec2-1-2-3-4.compute-1.amazonaws.com/blob",  # AWS, but no storage host
        "http://bucket.s3.amazonaws.com/blob",  # a storage host, but not over https
    ],
)
def test_a_presigned_url_elsewhere_than_langsmith_is_never_requested(emulator, caplog, url):
    payload = corrected_payload(1, emulator)
    run = payload["runs"][0]
    run["inputs"] = None
    run["inputs_s3_urls"] = {"ROOT": {"presigned_url": url}}
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert emulator.examples_in(DATASET) == []
    assert "is neither LangSmith's API nor a storage host" in caplog.text


def test_a_redirect_is_followed_only_to_a_langsmith_host(emulator, caplog):
    payload = corrected_payload(2, emulator)
    same, away = payload["runs"]
    target = emulator.add_blob("target", {"question": "moved"})
    same["inputs"], away["inputs"] = None, None
    same["inputs_s3_urls"] = {"ROOT": {"presigned_url": emulator.add_redirect("r1", target)}}
    elsewhere = emulator.add_redirect("r2", "http://169.254.169.254/latest")
    away["inputs_s3_urls"] = {"ROOT": {"presigned_url": elsewhere}}
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    [example] = emulator.examples_in(DATASET)
    assert example["source_run_id"] == same["id"] and example["inputs"] == {"question": "moved"}
    assert "host '169.254.169.254' is neither" in caplog.text


def test_hosts_in_langsmith_blob_hosts_are_fetched_from(emulator):
    payload = corrected_payload(1, emulator)
    run = payload["runs"][0]
    run["inputs"] = None
    url = emulator.add_blob("minio", {"q": "minio"}).replace("127.0.0.1", "localhost")
    run["inputs_s3_urls"] = {"ROOT": {"presigned_url": url}}
    run_handler(emulator, payload)  # localhost is not the API's host (127.0.0.1)
    assert emulator.examples_in(DATASET) == []
    run_handler(emulator, payload, LANGSMITH_BLOB_HOSTS="minio.internal, localhost")
    [example] = emulator.examples_in(DATASET)
    assert example["inputs"] == {"q": "minio"}


def test_the_dataset_is_created_when_missing_and_reused_after(emulator):
    run_handler(emulator, corrected_payload(1, emulator))
    run_handler(emulator, corrected_payload(1, emulator))
    assert [d["name"] for d in emulator.datasets.values()] == [DATASET]
    assert len(emulator.calls("POST", "/datasets")) == 1
    assert len(emulator.examples_in(DATASET)) == 2


def test_the_same_delivery_twice_creates_no_duplicate_examples(emulator, caplog):
    payload = corrected_payload(5, emulator)
    run_handler(emulator, payload)
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert len(emulator.examples_in(DATASET)) == 5
    assert "created=0 updated=0 already_present=5" in caplog.text


def test_a_partly_written_delivery_creates_only_the_missing_examples(emulator):
    payload = corrected_payload(4, emulator)
    run_handler(emulator, {**payload, "runs": payload["runs"][:2]})
    run_handler(emulator, payload)
    assert sorted(e["source_run_id"] for e in emulator.examples_in(DATASET)) == sorted(
        run["id"] for run in payload["runs"]
    )


def test_example_ids_are_derived_from_dataset_and_run(emulator):
    payload = corrected_payload(1, emulator)
    run_handler(emulator, payload)
    [dataset] = emulator.datasets.values()
    [example] = emulator.examples_in(DATASET)
    assert example["id"] == str(uuid.uuid5(uuid.UUID(dataset["id"]), payload["runs"][0]["id"]))


def test_1000_runs_take_a_bounded_number_of_api_calls_in_one_batch(emulator):
    payload = corrected_payload(1000, emulator)
    run_handler(emulator, payload)
    assert len(emulator.examples_in(DATASET)) == 1000
    feedback_calls = emulator.calls("GET", "/feedback")
    assert 10 <= len(feedback_calls) <= 20  # 100 run ids a request (+1 page when exactly full)
    assert max(query.count("run=") for _, _, query in feedback_calls) <= 100
    assert len(emulator.example_writes("POST")) <= 2
    assert len(emulator.requests) <= 30


def test_a_delivery_with_no_corrections_writes_nothing(emulator):
    run_handler(emulator, payload_with_runs(3, inputs={"q": 1}))
    assert emulator.datasets == {}
    assert emulator.calls("POST") == []


def test_langsmith_failing_with_503_then_recovering_creates_the_examples_once(
    emulator, make_settings, open_client
):
    payload = corrected_payload(3, emulator)
    emulator.fail(emulator.example_write_path, 503, times=5)  # more than the SDK's 3 retries
    settings = make_settings(
        handlers=("handlers.corrections_to_dataset",),
        env=langsmith_env(emulator),
    )
    with open_client(settings) as client:
        delivery_id = client.post("/", content=json.dumps(payload), headers=HEADER).json()[
            "delivery_id"
        ]
        drain(client)
        record = client.portal.call(client.app.state.store.get, delivery_id)
    assert record.status is DeliveryStatus.DONE
    assert record.handlers["handlers.corrections_to_dataset"].attempts == 2
    assert len(emulator.examples_in(DATASET)) == 3


def test_a_missing_api_key_fails_with_the_fix_to_apply(emulator):
    payload = corrected_payload(1, emulator)
    with pytest.raises(RuntimeError, match="LANGSMITH_API_KEY is not set"):
        run_handler(emulator, payload, LANGSMITH_API_KEY="")


def test_score_only_and_empty_corrections_are_no_reference_outputs(emulator, caplog):
    """LangSmith's "audit evaluator scores" writes `correction={"score": 1}`: a corrected
    score, not an answer. Neither it nor an empty correction becomes an example; a run with
    an older real correction keeps it."""
    payload = payload_with_runs(3, inputs={"q": 1}, outputs={"answer": "model"})
    audited, empty, both = (run["id"] for run in payload["runs"])
    emulator.add_feedback(audited, "correctness", correction={"score": 1})
    emulator.add_feedback(empty, "correctness", correction={})
    emulator.add_feedback(
        both, "correctness", correction={"answer": "fixed"}, created_at="2024-01-01T00:00:00+00:00"
    )
    emulator.add_feedback(
        both, "correctness", correction={"score": 0}, created_at="2024-02-01T00:00:00+00:00"
    )
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    [example] = emulator.examples_in(DATASET)
    assert (example["source_run_id"], example["outputs"]) == (both, {"answer": "fixed"})
    assert "[1x correction holds only a score]" in caplog.text
    assert "[1x correction is empty]" in caplog.text


def test_a_run_listed_twice_in_one_delivery_is_one_example(emulator, caplog):
    payload = corrected_payload(2, emulator)
    payload["runs"].append(dict(payload["runs"][0]))
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert sorted(e["source_run_id"] for e in emulator.examples_in(DATASET)) == sorted(
        run["id"] for run in payload["runs"][:2]
    )
    assert "corrected=2 created=2" in caplog.text


def test_the_declared_sdk_floor_keeps_reference_outputs():
    """langsmith 0.14.11's example model has no `reference_outputs`: it drops the field
    silently, and every example would be written without outputs (read from the published
    wheels). The floor must exclude it and admit the locked version."""
    import importlib.metadata
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    [langsmith] = [
        Requirement(spec)
        for spec in pyproject["project"]["dependencies"]
        if Requirement(spec).name == "langsmith"
    ]
    assert not langsmith.specifier.contains("0.14.11")
    assert langsmith.specifier.contains(importlib.metadata.version("langsmith"))


def test_ten_deliveries_in_one_process_share_one_sdk_client(emulator):
    """A client per delivery asked LangSmith for `/info` each time (and kept a session)."""
    for _ in range(10):
        run_handler(emulator, corrected_payload(1, emulator))
    assert len(emulator.examples_in(DATASET)) == 10
    assert len(emulator.calls("GET", "/info")) == 1


@pytest.mark.parametrize("endpoint_path", ["", "/api/v1"])
def test_a_relative_presigned_url_is_read_from_the_api_host(emulator, endpoint_path):
    """Self-hosted LangSmith sends `/api/v1/public/download?jwt=...`; httpx refuses a
    relative URL, so every such run was skipped. The endpoint may end in `/api/v1`."""
    payload = payload_with_runs(1, inputs=None, outputs={"answer": "model"})
    run = payload["runs"][0]
    url = emulator.add_blob("self-hosted-in", {"question": "big"}, relative=True)
    run["inputs_s3_urls"] = {"ROOT": {"presigned_url": url}}
    emulator.add_feedback(run["id"], "correctness", correction={"answer": "ok"})
    run_handler(emulator, payload, LANGSMITH_ENDPOINT=emulator.api_url + endpoint_path)
    [example] = emulator.examples_in(DATASET)
    assert example["inputs"] == {"question": "big"}
    assert emulator.calls("GET", "/public/download")  # read where the emulator serves it


def test_an_example_larger_than_langsmith_takes_is_skipped_not_retried_for_ever(emulator, caplog):
    """LangSmith refuses a request over 20 MB: such an example failed every retry and took
    its delivery's other examples down with it."""
    payload = corrected_payload(2, emulator)
    payload["runs"][0]["inputs"] = {"document": "x" * 20_500_000}
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert [e["source_run_id"] for e in emulator.examples_in(DATASET)] == [payload["runs"][1]["id"]]
    assert "is over CORRECTIONS_MAX_EXAMPLE_BYTES (19000000)" in caplog.text


def test_a_newer_correction_updates_the_example_an_older_one_made(emulator, caplog):
    """The second write met a 409 and counted "already present": the stale reference
    stayed. The example keeps its correction's id and time, so newer is decidable."""
    payload = payload_with_runs(1, inputs={"q": 1}, outputs={"answer": "model"})
    run_id = payload["runs"][0]["id"]
    emulator.add_feedback(
        run_id, "correctness", correction={"answer": "v1"}, created_at="2024-01-01T00:00:00+00:00"
    )
    run_handler(emulator, payload)
    newer = emulator.add_feedback(
        run_id, "correctness", correction={"answer": "v2"}, created_at="2024-03-01T00:00:00+00:00"
    )
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)  # a later delivery, or a replay, of the same run
        run_handler(emulator, payload)  # and again: nothing left to change
    [example] = emulator.examples_in(DATASET)
    assert example["outputs"] == {"answer": "v2"}
    assert example["metadata"]["feedback_id"] == newer["id"]
    assert example["metadata"]["feedback_at"].startswith("2024-03-01")
    assert "created=0 updated=1 already_present=0" in caplog.text
    assert "created=0 updated=0 already_present=1" in caplog.text
    assert len(emulator.example_writes("PATCH")) == 1


def test_an_organization_scoped_key_acts_in_langsmith_workspace_id(emulator):
    workspace = str(uuid.uuid4())
    emulator.org_keys["lsv2_org_key"] = workspace
    payload = corrected_payload(1, emulator)
    with pytest.raises(Exception, match="403"):
        run_handler(emulator, payload, LANGSMITH_API_KEY="lsv2_org_key")
    scoped = {"LANGSMITH_API_KEY": "lsv2_org_key", "LANGSMITH_WORKSPACE_ID": workspace}
    run_handler(emulator, payload, **scoped)
    assert len(emulator.examples_in(DATASET)) == 1


def test_langsmith_committing_then_failing_with_503_still_ends_with_each_example_once(
    emulator, caplog
):
    """The write lands, the answer is lost: the SDK re-sends, meets a 409, and the handler
    finds the examples there instead of failing the delivery."""
    payload = corrected_payload(3, emulator)
    emulator.fail(emulator.example_write_path, 503, times=1, after_work=True)
    with caplog.at_level(logging.INFO):
        run_handler(emulator, payload)
    assert len(emulator.examples_in(DATASET)) == 3
    assert len(emulator.example_writes("POST")) == 2  # the re-send met the 409
    assert "created=0 updated=0 already_present=3" in caplog.text


def test_the_emulator_is_as_strict_as_langsmith_on_keys_and_ids(emulator):
    """An emulator that accepts what LangSmith refuses hides bugs."""
    import httpx

    api = emulator.api_url
    key = {"x-api-key": "lsv2_test_key"}
    assert httpx.get(f"{api}/datasets").status_code == 401  # every API route wants a key
    assert httpx.get(f"{api}/datasets/not-a-uuid", headers=key).status_code == 422
    assert httpx.get(f"{api}/feedback?run=not-a-uuid", headers=key).status_code == 422
    assert httpx.get(f"{api}/examples?id=1", headers=key).status_code == 422
    assert httpx.get(f"{api}/info", headers=key).status_code == 200
    assert httpx.get(f"{api}/runs/{uuid.uuid4()}", headers=key).status_code == 404
    many_runs = "&".join(f"run={uuid.uuid4()}" for _ in range(300))  # ~12 KB of query
    assert httpx.get(f"{api}/feedback?{many_runs}", headers=key).status_code == 414


def test_examples_are_written_where_info_says_the_instance_takes_them(emulator):
    run_handler(emulator, corrected_payload(2, emulator))
    [write] = emulator.example_writes("POST")
    assert write[1].startswith(emulator.example_write_path)
    assert len(emulator.examples_in(DATASET)) == 2
    assert all(e["outputs"] == {"answer": f"fixed {e['source_run_id']}"}
               for e in emulator.examples_in(DATASET))  # fmt: skip
