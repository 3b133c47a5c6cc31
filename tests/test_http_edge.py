"""Every status code of the HTTP edge, through the in-process test client."""

import asyncio
import logging

import pytest
from conftest import HEADER, SECRET, drain, read_calls
from support.payloads import sample_payload, unique_body

from receiver.delivery import derive_delivery_id
from receiver.runtimes.local import create_local_app
from receiver.sources import SOURCES


@pytest.fixture
def client(make_settings, open_client):
    with open_client(make_settings()) as client:
        yield client


def test_the_sample_body_with_the_secret_in_the_query_is_accepted(client, sample_body, record_path):
    response = client.post(f"/?secret={SECRET}", content=sample_body)
    assert response.status_code == 202
    assert response.json() == {
        "delivery_id": derive_delivery_id(sample_body),
        "duplicate": False,
        "source": "rule",
        "routes": ["default"],
    }
    drain(client)
    assert [call[:2] for call in read_calls(record_path)] == [
        ("handlers_for_tests.recording", derive_delivery_id(sample_body))
    ]


def test_the_secret_in_the_header_is_accepted(client, sample_body):
    assert client.post("/", content=sample_body, headers=HEADER).status_code == 202


def test_any_of_several_configured_secrets_is_accepted(make_settings, open_client):
    with open_client(make_settings(secrets=("old-secret", "new-secret"))) as client:
        for secret in ("old-secret", "new-secret"):
            body = unique_body()
            assert (
                client.post("/", content=body, headers={"X-Webhook-Secret": secret}).status_code
                == 202
            )


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {}), ("?secret=wrong", {}), ("", {"X-Webhook-Secret": "wrong"}), ("?secret=", {})],
)
def test_a_missing_or_wrong_secret_is_401_and_no_handler_runs(
    client, sample_body, record_path, query, headers
):
    response = client.post(f"/{query}", content=sample_body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong webhook secret"}
    drain(client)
    assert read_calls(record_path) == []
    assert client.portal.call(client.app.state.store.recent) == []


def test_a_wrong_header_is_not_rescued_by_a_right_query(client, sample_body):
    response = client.post(
        f"/?secret={SECRET}", content=sample_body, headers={"X-Webhook-Secret": "x"}
    )
    assert response.status_code == 401


def test_no_configured_secret_refuses_every_post_with_503_and_says_why(
    make_settings, open_client, sample_body, caplog
):
    with open_client(make_settings(secrets=())) as client, caplog.at_level(logging.ERROR):
        for headers in ({}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": "anything"}):
            assert client.post("/", content=sample_body, headers=headers).status_code == 503
        assert "LS_WEBHOOK" in caplog.text
        assert client.portal.call(client.app.state.store.recent) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON: expected ident at line 1 column 2"),
        (b"", "not valid JSON: EOF while parsing a value at line 1 column 0"),
        (b"[1, 2]", "a JSON object is expected, not an array"),
        (b'{"rule_id": 1, "rule_id": 2}', 'repeated key "rule_id" at line 1 column 26'),
    ],
)
def test_a_body_that_is_not_a_json_object_is_422_with_a_short_reason(client, body, reason):
    response = client.post("/", content=body, headers=HEADER)
    assert response.status_code == 422
    assert reason in response.json()["error"]
    assert len(response.json()["error"]) < 400


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"rule_id": "not-a-uuid"}, "not a valid rule body: rule_id: Input should be a valid UUID"),
        ({**sample_payload(), "runs": "many"}, "not a valid rule body: runs: Input should be"),
    ],
)
def test_a_body_with_a_senders_keys_but_wrong_fields_is_kept_as_unknown_saying_why(
    client, body, problem, caplog
):
    """LangSmith never retries a 4xx: a body refused would be lost, so it is kept."""
    with caplog.at_level(logging.WARNING, logger="receiver.http"):
        response = client.post("/", json=body, headers=HEADER)
    assert (response.status_code, response.json()["source"]) == (202, "unknown")
    assert problem in caplog.text
    status = client.get(f"/deliveries/{response.json()['delivery_id']}", headers=HEADER).json()
    assert status["subject"].startswith(problem)


def test_a_body_over_the_limit_is_413_from_its_content_length(make_settings, open_client):
    with open_client(make_settings(max_body_bytes=1000)) as client:
        body = unique_body(runs=5)
        assert len(body) > 1000
        response = client.post("/", content=body, headers=HEADER)
        assert response.status_code == 413
        assert "1000-byte limit" in response.json()["error"]


def test_a_chunked_body_over_the_limit_is_413_without_reading_the_rest(make_settings):
    app = create_local_app(make_settings(max_body_bytes=10_000))
    chunks_read, sent = 0, []

    async def receive():
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": chunks_read < 1000}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"x-webhook-secret", SECRET.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert chunks_read <= 11  # 10,000 bytes of 1 KiB chunks: stopped at the 11th of 1,000


def test_a_body_at_the_limit_is_accepted(make_settings, open_client):
    body = unique_body()
    with open_client(make_settings(max_body_bytes=len(body))) as client:
        assert client.post("/", content=body, headers=HEADER).status_code == 202


def test_healthz_needs_no_secret(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_the_index_page_names_the_handlers_and_the_url_form_but_never_the_secret(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "handlers_for_tests.recording" in response.text
    assert "http://testserver/</code>" in response.text
    assert "?secret=" in response.text
    assert "X-Webhook-Secret" in response.text
    assert SECRET not in response.text


def test_delivery_status_needs_the_secret_and_shows_each_handler(client, sample_body):
    delivery_id = client.post("/", content=sample_body, headers=HEADER).json()["delivery_id"]
    drain(client)
    assert client.get(f"/deliveries/{delivery_id}").status_code == 401
    response = client.get(f"/deliveries/{delivery_id}", headers=HEADER)
    assert response.status_code == 200
    status = response.json()
    assert status["status"] == "done"
    assert status["runs"] == 1
    state = status["handlers"]["handlers_for_tests.recording"]
    assert state.pop("finished_at") >= status["received_at"]
    assert state == {"status": "done", "attempts": 1, "last_error": None, "failures": []}
    assert client.get("/deliveries/unknown", headers=HEADER).status_code == 404


def test_the_openapi_schema_documents_the_body_and_the_status_codes(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/"]["post"]
    documented = post["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/RulePayload"} in documented
    assert len(documented) == len(SOURCES)
    assert {"202", "401", "413", "422", "503"} <= set(post["responses"])
    assert "rule_id" in schema["components"]["schemas"]["RulePayload"]["properties"]
    assert "commit" in schema["components"]["schemas"]["CommitData"]["properties"]


def test_the_openapi_document_is_generated_with_both_secret_forms_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["secret-header"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Webhook-Secret",
        "description": schemes["secret-header"]["description"],
    }
    assert schemes["secret-query"]["in"] == "query"
    assert {"secret-header": []} in schema["paths"]["/"]["post"]["security"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "openapi.json" in docs.text


def test_a_wrong_method_is_405_naming_every_method_the_path_serves(client):
    response = client.delete("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "error" in response.json()
