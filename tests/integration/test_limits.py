"""Limits and hostile input against a live server: every bound answers the specified 4xx naming
the field or parameter; sort keys come from allow-lists; search terms and filters are bound
parameters (injection strings, LIKE wildcards, backslashes, NUL, huge and unicode strings);
ids outside int64 are unknown (404), never a 500.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apm.adapters.migrations import upgrade
from apm.domain.listing import MAX_FILTER_LENGTH, MAX_PAGE_SIZE, MAX_SEARCH_TERMS
from apm.domain.validation import (
    MAX_ENDPOINT,
    MAX_REF,
    MAX_SERVICE,
    TAGS_MAX_DEPTH,
    TAGS_MAX_KEYS,
    TAGS_MAX_STRING,
)
from tests.support.live_server import LiveServer, live_server
from tests.support.postgres import create_database, drop_database

MAX_BODY = 64 * 1024
MAX_EVENTS = 100
EVENT: dict[str, Any] = {
    "time": "2025-12-14T12:00:00Z", "service": "limits", "endpoint": "/e", "method": "GET",
    "status_code": 200, "latency_ms": 5,
}
JSON = {"content-type": "application/json"}
INJECTIONS = [
    "'; DROP TABLE api_requests;--",
    "\" OR 1=1 --",
    "%", "_", "%_%", "\\", "\\\\", "\\%", "a%b", "a_b",
    "$1", ":service", "{}", "[]", "(", ")",
    "ünïcødé", "日本語", "\U0001f600", "\u202e", "é",
]


@pytest.fixture(scope="module")
def server(pg_server: str) -> Iterator[LiveServer]:
    url, name = asyncio.run(create_database(pg_server))
    upgrade(url)
    env = {"APM_MAX_BODY_BYTES": str(MAX_BODY), "APM_INGEST_MAX_EVENTS": str(MAX_EVENTS)}
    try:
        with live_server(url, env=env) as live:
            yield live
    finally:
        asyncio.run(drop_database(pg_server, name))


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def field_error(response: httpx.Response, name: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"], body
    assert name in body["errors"], body
    assert all(isinstance(message, str) and message for message in body["errors"][name])


def route_exists(http: httpx.Client, method: str, path: str) -> bool:
    paths = http.get("/schema/openapi.json").json()["paths"]
    return method.lower() in paths.get(path, {})


# --- bodies ---------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_before_parsing(http: httpx.Client) -> None:
    big = {**EVENT, "tags": {"pad": "x" * 1000, **{f"k{i}": "y" * 900 for i in range(80)}}}
    raw = json.dumps(big).encode()
    assert len(raw) > MAX_BODY
    response = http.post("/api/requests/", content=raw, headers=JSON)
    assert response.status_code == 413 and response.json()["detail"]
    # Not JSON at all, but too large: the size is refused first.
    garbage = http.post("/api/requests/", content=b"{" * (MAX_BODY + 1), headers=JSON)
    assert garbage.status_code == 413


def test_a_keep_alive_client_carries_on_after_a_413(http: httpx.Client) -> None:
    """The unread rest of the body poisons the connection: the 413 must close it, so the
    client's next request goes out on a fresh one instead of failing."""
    for _ in range(5):
        refused = http.post("/api/requests/", content=b"{" * (MAX_BODY * 2), headers=JSON)
        assert refused.status_code == 413
        assert refused.headers["connection"].lower() == "close"
        assert http.post("/api/requests/", json=EVENT).status_code == 201


def test_chunked_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 8):
            yield b" " * 1024

    response = http.post("/api/requests/", content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_gzip_bomb_is_413_and_corrupt_gzip_is_400(http: httpx.Client) -> None:
    bomb = gzip.compress(b"[" + b" " * (MAX_BODY * 8) + b"]")
    assert len(bomb) < MAX_BODY
    headers = {**JSON, "content-encoding": "gzip"}
    response = http.post("/api/requests/", content=bomb, headers=headers)
    assert response.status_code == 413 and "ecompressed" in response.json()["detail"]
    corrupt = http.post("/api/requests/", content=b"\x1f\x8bnot gzip at all", headers=headers)
    assert corrupt.status_code == 400 and "gzip" in corrupt.json()["detail"]
    small = http.post(
        "/api/requests/", content=gzip.compress(json.dumps(EVENT).encode()), headers=headers
    )
    assert small.status_code == 201


def test_wrong_content_type_and_encoding_are_415(http: httpx.Client) -> None:
    plain = http.post(
        "/api/requests/", content=json.dumps(EVENT), headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    brotli = http.post(
        "/api/requests/", content=b"x", headers={**JSON, "content-encoding": "br"}
    )
    assert brotli.status_code == 415


@pytest.mark.parametrize(
    "raw",
    [
        b'{"tags": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b"[" * 50_000,
        b'{"service": "\\ud800"}',
        b'{"service": "\xff\xfe"}',
        b"\x00",
        b"",
    ],
    ids=["deeply-nested", "unclosed", "lone-surrogate", "bad-utf8", "nul", "empty"],
)
def test_malformed_bodies_are_400(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/api/requests/", content=raw, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("Malformed JSON")


def test_too_many_events_is_413_naming_the_limit(http: httpx.Client) -> None:
    if not route_exists(http, "post", "/api/requests/ingest"):
        pytest.skip("POST /api/requests/ingest/ is not served by this build")
    events = [EVENT] * (MAX_EVENTS + 1)
    response = http.post("/api/requests/ingest/", json=events)
    assert response.status_code == 413, response.text
    assert response.json() == {
        "detail": f"Too many events: got {MAX_EVENTS + 1}, max allowed is {MAX_EVENTS}.",
        "max_events": MAX_EVENTS,
    }
    wrapped = http.post("/api/requests/ingest/", json={"events": events})
    assert wrapped.status_code == 413
    field_error(http.post("/api/requests/ingest/?max_events=0", json=[EVENT]), "max_events")
    field_error(
        http.post(f"/api/requests/ingest/?max_events={MAX_EVENTS + 1}", json=[EVENT]),
        "max_events",
    )


# --- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "at_limit", "over"),
    [
        ("service", "s" * MAX_SERVICE, "s" * (MAX_SERVICE + 1)),
        ("endpoint", "/" * MAX_ENDPOINT, "/" * (MAX_ENDPOINT + 1)),
        ("trace_id", "t" * MAX_REF, "t" * (MAX_REF + 1)),
        ("user_ref", "u" * MAX_REF, "u" * (MAX_REF + 1)),
        ("service", "\U0001f600" * MAX_SERVICE, "\U0001f600" * (MAX_SERVICE + 1)),
        ("service", "  " + "s" * MAX_SERVICE + "  ", "a\x00b"),
    ],
    ids=["service", "endpoint", "trace_id", "user_ref", "service-emoji", "service-trim-nul"],
)
def test_string_lengths(http: httpx.Client, field: str, at_limit: str, over: str) -> None:
    created = http.post("/api/requests/", json={**EVENT, field: at_limit})
    assert created.status_code == 201, created.text
    assert created.json()[field] == (at_limit.strip() if field == "service" else at_limit)
    field_error(http.post("/api/requests/", json={**EVENT, field: over}), field)
    record_id = created.json()["id"]
    field_error(http.patch(f"/api/requests/{record_id}/", json={field: over}), field)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("ok", "bad"),
    [
        (nested(TAGS_MAX_DEPTH), nested(TAGS_MAX_DEPTH + 1)),
        (
            {f"k{i}": i for i in range(TAGS_MAX_KEYS)},
            {f"k{i}": i for i in range(TAGS_MAX_KEYS + 1)},
        ),
        ({"s": "x" * TAGS_MAX_STRING}, {"s": "x" * (TAGS_MAX_STRING + 1)}),
        ({"a": list(range(TAGS_MAX_KEYS))}, {"a": list(range(TAGS_MAX_KEYS + 1))}),
        ({"ключ": "значение", "\U0001f600": ["é"]}, {"k": "nul\x00"}),
        ({"k": None}, {"nul\x00key": 1}),
    ],
    ids=["depth", "keys", "string", "array", "unicode-vs-nul-value", "nul-key"],
)
def test_tags_size_and_depth(http: httpx.Client, ok: dict[str, Any], bad: dict[str, Any]) -> None:
    created = http.post("/api/requests/", json={**EVENT, "tags": ok})
    assert created.status_code == 201, created.text
    assert created.json()["tags"] == ok
    field_error(http.post("/api/requests/", json={**EVENT, "tags": bad}), "tags")


# --- query parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (f"page_size={MAX_PAGE_SIZE + 1}", "page_size"),
        ("page_size=0", "page_size"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=1e3", "page"),
        ("status_code=600", "status_code"),
        ("status_code__in=" + ",".join(["200"] * 101), "status_code__in"),
        ("status_code__in=200,abc", "status_code__in"),
        ("latency_min=nan", "latency_min"),
        ("latency_max=inf", "latency_max"),
        ("time_after=yesterday", "time_after"),
        ("method=BREW", "method"),
        ("search=" + "+".join(["t"] * (MAX_SEARCH_TERMS + 1)), "search"),
        ("search=" + "x" * (MAX_FILTER_LENGTH + 1), "search"),
        ("service=" + "x" * (MAX_FILTER_LENGTH + 1), "service"),
        ("trace_id=a%00b", "trace_id"),
        ("search=a%00b", "search"),
        ("ordering=id", "ordering"),
        ("ordering=tags", "ordering"),
        ("ordering=time;DROP TABLE api_requests", "ordering"),
        ("ordering=-time,(select 1)", "ordering"),
        ("ordering=time desc", "ordering"),
    ],
)
def test_list_parameters_are_bounded(http: httpx.Client, query: str, name: str) -> None:
    field_error(http.get(f"/api/requests/?{query}"), name)


def test_far_dates_are_answers_not_errors(http: httpx.Client) -> None:
    for query in ("time_before=9999-12-31", "time_after=0001-01-01", "time_before=0001-01-01",
                  "time_after=9999-12-31T23:59:59Z"):
        response = http.get(f"/api/requests/?{query}")
        assert response.status_code == 200, (query, response.text)


def analytics_paths(http: httpx.Client) -> list[str]:
    paths = http.get("/schema/openapi.json").json()["paths"]
    wanted = ["/api/requests/hourly", "/api/requests/daily", "/api/requests/kpis",
              "/api/requests/top-endpoints"]
    return [path for path in wanted if "get" in paths.get(path, {})]


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/api/requests/hourly", "limit=5001", "limit"),
        ("/api/requests/daily", "limit=0", "limit"),
        ("/api/requests/top-endpoints", "limit=201", "limit"),
        ("/api/requests/top-endpoints", "sort_by=hits;DROP TABLE api_requests", "sort_by"),
        ("/api/requests/top-endpoints", "sort_by=service", "sort_by"),
        ("/api/requests/top-endpoints", "direction=sideways", "direction"),
        ("/api/requests/kpis", "error_from=99", "error_from"),
        ("/api/requests/kpis", "granularity=minutely", "granularity"),
        ("/api/requests/kpis", "start=2025-12-03&end=2025-12-01", "start"),
        ("/api/requests/kpis", "start=1900-01-01&end=2025-01-01", "start"),
        ("/api/requests/hourly", "start=2000-01-01&end=2030-01-01", "start"),
        ("/api/requests/kpis", "service=" + "x" * (MAX_FILTER_LENGTH + 1), "service"),
        ("/api/requests/kpis", "endpoint=a%00b", "endpoint"),
    ],
)
def test_analytics_parameters_are_bounded(
    http: httpx.Client, path: str, query: str, name: str
) -> None:
    if path not in analytics_paths(http):
        pytest.skip(f"GET {path}/ is not served by this build")
    field_error(http.get(f"{path}/?{query}"), name)


def test_analytics_take_far_and_hostile_values(http: httpx.Client) -> None:
    for path in analytics_paths(http):
        for query in ("end=9999-12-31", "start=9999-12-30", "start=0001-01-01&end=0001-01-02",
                      "end=0001-01-01"):
            response = http.get(f"{path}/?{query}")
            # An answer, or a field error naming the bound: never a 500.
            if response.status_code != 200:
                assert response.status_code == 400, (path, query, response.text)
                assert set(response.json()["errors"]) <= {"start", "end"}, response.text
        for query in ("service=%27%3B%20DROP%20TABLE%20api_requests%3B--", "endpoint=%25",
                      "endpoint=%5C", "service=%F0%9F%98%80", "method=get"):
            response = http.get(f"{path}/?{query}")
            assert response.status_code == 200, (path, query, response.text)
    assert http.get("/api/requests/").status_code == 200


# --- hostile strings are data ---------------------------------------------------------------


def test_search_and_filters_treat_hostile_strings_as_data(http: httpx.Client) -> None:
    service = "hostile-search"
    stored = {}
    for text in INJECTIONS:
        response = http.post(
            "/api/requests/",
            json={**EVENT, "service": service, "endpoint": f"/x{text}y", "trace_id": text},
        )
        assert response.status_code == 201, (text, response.text)
        stored[text] = response.json()["id"]
    plain = http.post("/api/requests/", json={**EVENT, "service": service, "endpoint": "/plain"})
    assert plain.status_code == 201
    for text in INJECTIONS:
        if not text.strip(" ,"):
            continue
        # Exact filter: only the row whose trace_id is exactly this text.
        exact = http.get("/api/requests/", params={"service": service, "trace_id": text})
        assert exact.status_code == 200, (text, exact.text)
        assert [row["id"] for row in exact.json()["results"]] == [stored[text]], text
        # Substring search: the text is matched literally (no wildcard, no escape leaks).
        found = http.get("/api/requests/", params={"service": service, "search": text})
        assert found.status_code == 200, (text, found.text)
        ids = {row["id"] for row in found.json()["results"]}
        expected = {
            stored[other] for other in INJECTIONS
            if all(term.lower() in f"/x{other}y".lower() or term.lower() in other.lower()
                   for term in text.replace(",", " ").split())
        }
        assert ids == expected, (text, ids, expected)
    # The table is still there and whole.
    count = http.get("/api/requests/", params={"service": service}).json()["count"]
    assert count == len(INJECTIONS) + 1


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "record_id", ["0", "-1", str(2**63), str(-(2**63) - 1), "9" * 40, str(2**63 - 1)]
)
def test_ids_outside_int64_are_404(http: httpx.Client, method: str, record_id: str) -> None:
    body = EVENT if method == "PUT" else {"latency_ms": 1} if method == "PATCH" else None
    response = http.request(method, f"/api/requests/{record_id}/", json=body)
    assert response.status_code == 404, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("record_id", ["abc", "1.5", "1e3", "%00", "0x10", "%20"])
def test_ids_that_are_not_numbers_are_404(http: httpx.Client, record_id: str) -> None:
    response = http.get(f"/api/requests/{record_id}/")
    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    ("number", "status"),
    [
        (b"9" * 5000, 400),  # beyond what the decoder holds: malformed, not a 500
        (b"-" + b"9" * 5000, 400),
        (b"0." + b"0" * 20_000 + b"1", 201),  # more digits than jsonb keeps after the point
        (b"1e308", 201),
        (b"1e-400", 201),
        (b"-0", 201),
    ],
    ids=["int-5000-digits", "negative-int", "fraction-20000-digits", "1e308", "1e-400", "-0"],
)
def test_extreme_numbers_in_tags(http: httpx.Client, number: bytes, status: int) -> None:
    event = json.dumps({**EVENT, "tags": {"n": 0}}).encode().replace(b'"n": 0', b'"n": ' + number)
    single = http.post("/api/requests/", content=event, headers=JSON)
    assert single.status_code == status, single.text
    if route_exists(http, "post", "/api/requests/ingest"):
        bulk = http.post("/api/requests/ingest/", content=b"[" + event + b"]", headers=JSON)
        if status == 201:
            assert bulk.status_code == 200 and bulk.json()["inserted"] == 1, bulk.text
        else:
            assert bulk.status_code == 400, bulk.text
