"""The payload models accept what LangSmith sends and keep what they do not know."""

import json
from uuid import UUID

import pytest
from pydantic import ValidationError
from support.payloads import sample_payload

from receiver.sources import RulePayload


def test_the_sample_body_validates_with_its_runs_and_feedback_stats(sample_body):
    payload = RulePayload.model_validate_json(sample_body)
    assert payload.rule_id == UUID("d75d7417-0c57-4655-88fe-1db3cda3a47a")
    assert payload.start_time < payload.end_time
    assert [run.name for run in payload.runs] == ["Search"]
    assert payload.feedback_stats["user_score"].n == 2
    assert payload.feedback_stats["category"].values == {"CONCEPTUAL": 1}


def test_unknown_fields_are_kept_at_every_level():
    body = sample_payload()
    body["new_top_level"] = {"x": 1}
    body["runs"][0]["new_run_field"] = [1, 2]
    body["feedback_stats"]["user_score"]["new_stat"] = True
    payload = RulePayload.model_validate(body)
    assert payload.model_extra == {"new_top_level": {"x": 1}}
    assert payload.runs[0].model_extra["new_run_field"] == [1, 2]
    assert payload.feedback_stats["user_score"].model_extra == {"new_stat": True}
    assert json.loads(payload.model_dump_json())["new_top_level"] == {"x": 1}


def test_fields_shown_as_nullable_may_be_null_or_missing():
    body = sample_payload()
    body["feedback_stats"] = None
    body["runs"] = [{"id": body["runs"][0]["id"]}]
    payload = RulePayload.model_validate(body)
    run = payload.runs[0]
    assert (run.inputs, run.outputs, run.status, run.app_path) == (None, None, None, None)


@pytest.mark.parametrize("missing", ["rule_id", "start_time", "end_time"])
def test_a_body_without_a_required_field_is_refused(missing):
    body = sample_payload()
    del body[missing]
    with pytest.raises(ValidationError, match=missing):
        RulePayload.model_validate(body)


def test_a_run_without_an_id_is_refused():
    body = sample_payload()
    del body["runs"][0]["id"]
    with pytest.raises(ValidationError, match=r"runs\.0\.id"):
        RulePayload.model_validate(body)


def test_a_rule_over_threads_has_no_runs_and_keeps_its_items():
    """Thread rules (2026) send their items under another key, in a shape not documented."""
    body = sample_payload()
    threads = [{"thread_id": "t-1", "runs": 3}]
    body["threads"] = threads
    del body["runs"]
    payload = RulePayload.model_validate(body)
    assert payload.runs == []
    assert payload.model_extra["threads"] == threads
