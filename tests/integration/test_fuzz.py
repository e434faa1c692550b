"""Schema fuzzing: every operation of the service's own OpenAPI document, on a live server.

Schemathesis generates valid and invalid requests (query parameters, path ids, JSON bodies) from
/schema/openapi.json and checks each answer: never a 5xx, only documented status codes, a body
and content type that match the documented response, and invalid input refused with a 4xx.
The server runs in a subprocess on its own database, exactly as deployed. Examples per
operation are bounded so that the whole module stays well under a minute or two on CI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apm.adapters.migrations import upgrade
from apm.app import create_app
from tests.conftest import settings_for
from tests.support.live_server import LiveServer, live_server
from tests.support.postgres import create_database, drop_database

MAX_EXAMPLES = 40
# The TimescaleDB test engine serves one transaction at a time: fewer examples there.
MAX_EXAMPLES_TIMESCALE = 12
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EVENT = {
    "time": "2025-12-14T12:00:00Z", "service": "fuzz", "endpoint": "/seed", "method": "GET",
    "status_code": 200, "latency_ms": 5,
}


def seed(server: LiveServer) -> None:
    """Some rows, so that reads and id-based operations also hit real data."""
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        for _ in range(5):
            assert http.post("/api/requests/", json=EVENT).status_code == 201
        events = [{**EVENT, "latency_ms": n, "status_code": 200 + n * 15} for n in range(20)]
        assert http.post("/api/requests/ingest/", json=events).status_code == 200


@pytest.fixture(scope="module")
def fuzz_server(pg_server: str) -> Iterator[LiveServer]:
    url, name = asyncio.run(create_database(pg_server))
    upgrade(url)
    try:
        with live_server(url, env={"APM_DB_STATEMENT_TIMEOUT_MS": "20000"}) as server:
            seed(server)
            yield server
    finally:
        asyncio.run(drop_database(pg_server, name))


@pytest.fixture(scope="module")
def ts_fuzz_server(ts_url: str) -> Iterator[LiveServer]:
    """The same service on the TimescaleDB backend (continuous aggregates)."""
    env = {"APM_BACKEND": "timescale", "APM_DB_POOL_SIZE": "1", "APM_DB_MAX_OVERFLOW": "0",
           "APM_INGEST_WRITE": "unnest", "APM_DB_STATEMENT_TIMEOUT_MS": "60000"}
    with live_server(ts_url, env=env) as server:
        seed(server)
        yield server


def service_document() -> dict:
    """The OpenAPI document the app serves (built in-process: no database is opened)."""
    app = create_app(settings_for("postgresql+asyncpg://unused@localhost/unused"))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(service_document())
schema.config.generation.update(max_examples=MAX_EXAMPLES)
# Invalid input must be refused with one of these (413: too many events or too large).
schema.config.checks.negative_data_rejection.expected_statuses = ["400", "401", "404", "413", "415"]


def checks_for(case: schemathesis.Case) -> list:
    """Bulk ingest stores a batch's valid events and counts the invalid ones (200, spec 2.3):
    an invalid event in the body is accepted by design. Everywhere else it is refused."""
    if case.operation.path == "/api/requests/ingest":
        return CHECKS
    return [*CHECKS, schemathesis.checks.negative_data_rejection]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, fuzz_server: LiveServer
) -> None:
    case.call_and_validate(base_url=fuzz_server.base_url, checks=checks_for(case), timeout=60)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES_TIMESCALE,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented_on_timescaledb(
    case: schemathesis.Case, ts_fuzz_server: LiveServer
) -> None:
    case.call_and_validate(base_url=ts_fuzz_server.base_url, checks=checks_for(case), timeout=120)


def test_the_document_covers_every_route(fuzz_server: LiveServer) -> None:
    """Each operation documents its parameters, body and error answers (the fuzzer's input)."""
    document = httpx.get(fuzz_server.url("/schema/openapi.json")).json()
    assert document == service_document()  # the fuzzed document is the one served
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    listing = operations[("GET", "/api/requests")]
    names = {param["name"] for param in listing["parameters"]}
    assert {"service", "search", "ordering", "page", "page_size", "status_code__in"} <= names
    for key in [("POST", "/api/requests"), ("PUT", "/api/requests/{request_id}"),
                ("PATCH", "/api/requests/{request_id}")]:
        body = operations[key]["requestBody"]["content"]["application/json"]["schema"]
        assert body["type"] == "object" and "status_code" in body["properties"], key
        assert {"400", "413", "415", "503"} <= set(operations[key]["responses"]), key
    ours = {"ErrorBody", "FieldErrorBody", "UnavailableBody", "IngestRefused",
            "TooManyEventsBody", "HealthFailure"}
    for (method, path), operation in operations.items():
        if path.startswith("/api/requests"):
            assert {"400", "401", "503"} <= set(operation["responses"]), (method, path)
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                # Our error bodies, never Litestar's default (which promises a status_code).
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in ours, (method, path, code, ref)
