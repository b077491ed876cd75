"""schemathesis against the service's own OpenAPI schema, in-process over ASGI.

A private tiny service with an API key: every operation is fuzzed twice, once sending the key
(writes go through and change the store) and once without it (writes must answer 401).
Every check schemathesis has runs (no 5xx, response bodies, status codes, content types and
headers conform to the schema, invalid input is refused, ...), and each call must finish
within the test timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

API_KEY = "fuzz-key"
MAX_EXAMPLES = 25  # per operation, generation mode and key/no key

CALLS: dict[str, int] = {"requests": 0, "5xx": 0, "401": 0}
WRITES = {
    "POST /v1/items",
    "DELETE /v1/items/{item_id}",
    "POST /v1/fewshot/fit",
    "POST /v1/models/{model_id}/activate",
}


@pytest.fixture(scope="module")
def st_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from pydantic import SecretStr
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    store: Path = tmp_path_factory.mktemp("schemathesis") / "store"
    state = ServiceState.open(
        Settings(
            store=store,
            profile="tiny",
            max_upload_mb=1.0,
            max_pixels=200_000,
            max_audio_seconds=5.0,
            ui=False,
            fit_epochs=1,
            api_key=SecretStr(API_KEY),
        )
    )
    app = create_app(state=state)
    yield app
    state.close()


@pytest.fixture(scope="module")
def api_schema(st_service, schemathesis_counts: dict):
    yield schemathesis.openapi.from_asgi("/openapi.json", st_service)
    # the figures RELIABILITY.md quotes, printed in the terminal summary (tests/conftest.py)
    schemathesis_counts.update(CALLS)


# Every operation of the schema (checked against it below, so a new route cannot be missed).
OPERATIONS = [
    "GET /v1/health",
    "GET /v1/stats",
    "POST /v1/embed",
    "POST /v1/search",
    "POST /v1/items",
    "GET /v1/items/{item_id}",
    "GET /v1/items/{item_id}/content",
    "DELETE /v1/items/{item_id}",
    "POST /v1/fewshot/fit",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "DELETE /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "GET /v1/models",
    "POST /v1/models/{model_id}/activate",
]


# Operations without parameters or a body have no invalid input to generate.
# (GET /v1/jobs/{job_id} takes any string as the job id.)
NO_INPUT = {
    "GET /v1/health",
    "GET /v1/stats",
    "GET /v1/jobs",
    "GET /v1/models",
    "GET /v1/jobs/{job_id}",
    "DELETE /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
}
CASES = [(op, "positive") for op in OPERATIONS] + [
    (op, "negative") for op in OPERATIONS if op not in NO_INPUT
]


def test_every_operation_is_fuzzed(api_schema) -> None:
    ops = {f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations()}
    assert ops == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "nokey"])
@pytest.mark.parametrize("op,mode", CASES)
def test_operation_conforms_to_schema(api_schema, op: str, mode: str, with_key: bool) -> None:
    from hypothesis import given
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import (
        negative_data_rejection,
        positive_data_acceptance,
    )

    method, path = op.split(" ", 1)
    operation = api_schema[path][method]
    headers = {"X-API-Key": API_KEY} if with_key else {}

    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case) -> None:
        if with_key:
            case.headers = {**(case.headers or {}), **headers}
        response = case.call()
        CALLS["requests"] += 1
        if response.status_code >= 500:
            CALLS["5xx"] += 1
        if op in WRITES and not with_key:  # the key is enforced on every write
            assert response.status_code == 401, response.text
            CALLS["401"] += 1
        excluded = []
        if case.media_type == "multipart/form-data" or op == "POST /v1/fewshot/fit":
            # A schema cannot say that an upload must decode as an image or a sound, or that
            # a support set needs two concepts in two modalities: only there may schema-valid
            # data be refused (with a 4xx, still checked by every other check).
            excluded.append(positive_data_acceptance)
        if case.media_type == "multipart/form-data":
            # schemathesis 4.32 misreads its own mutations of nullable fields inside the JSON
            # 'request' part (it reported {"source": "x"} against the null branch of
            # string|null as invalid); JSON bodies keep this check.
            excluded.append(negative_data_rejection)
        case.validate_response(response, headers=headers, excluded_checks=excluded or None)

    run()
