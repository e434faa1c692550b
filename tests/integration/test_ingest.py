"""Bulk ingest (spec 2.3) through HTTP against a real PostgreSQL, with both write strategies."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.app import create_app
from tests.conftest import settings_for

EVENT: dict[str, Any] = {
    "time": "2025-12-14T12:00:00Z",
    "service": "billing",
    "endpoint": "/api/v1/invoices",
    "method": "GET",
    "status_code": 200,
    "latency_ms": 123,
    "trace_id": "trace-001",
    "user_ref": "user-001",
    "tags": {"env": "prod"},
}

JSON = {"content-type": "application/json"}
STRATEGIES = ("copy", "unnest")


def events(n: int, **changes: Any) -> list[dict[str, Any]]:
    return [{**EVENT, "latency_ms": i, "trace_id": f"t-{i}", **changes} for i in range(n)]


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(text("SELECT count(*) FROM api_requests"))).scalar_one()


async def stored(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT time, service, endpoint, method, status_code, latency_ms, trace_id, "
                "user_ref, tags FROM api_requests ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in rows]


@pytest.fixture(params=STRATEGIES)
async def client(
    request: pytest.FixtureRequest, pg_url: str, pg_clean: AsyncEngine
) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings_for(pg_url, ingest_write=request.param))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def make_client(pg_url: str, **overrides: Any) -> AsyncTestClient:
    return AsyncTestClient(create_app(settings_for(pg_url, **overrides)))


async def test_a_raw_list_is_stored_cleaned(client: AsyncTestClient, pg_clean: AsyncEngine) -> None:
    body = [
        EVENT,
        {
            **EVENT,
            "time": "2025-12-14T13:30:00.5+01:30",
            "service": "  billing  ",
            "endpoint": " /x ",
            "method": "post",
            "trace_id": None,
            "tags": {"nested": {"a": [1, 2.5, None, True]}, "ünï": "cødé"},
        },
        {k: v for k, v in EVENT.items() if k not in ("trace_id", "user_ref", "tags")}
        | {"time": "2025-12-14T12:00:00", "method": " Delete "},
    ]
    response = await client.post("/api/requests/ingest/", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"inserted": 3, "rejected": 0, "errors": []}
    rows = await stored(pg_clean)
    assert rows[0] == {**EVENT, "time": datetime(2025, 12, 14, 12, tzinfo=UTC)}
    assert rows[1]["time"] == datetime(2025, 12, 14, 12, 0, 0, 500000, tzinfo=UTC)
    assert (rows[1]["service"], rows[1]["endpoint"], rows[1]["method"]) == ("billing", "/x", "POST")
    assert rows[1]["trace_id"] is None
    assert rows[1]["tags"] == {"nested": {"a": [1, 2.5, None, True]}, "ünï": "cødé"}
    assert rows[2]["time"] == datetime(2025, 12, 14, 12, tzinfo=UTC)
    assert rows[2]["method"] == "DELETE"
    assert (rows[2]["trace_id"], rows[2]["user_ref"], rows[2]["tags"]) == (None, None, {})


async def test_an_events_object_is_stored_and_the_path_needs_no_slash(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    response = await client.post("/api/requests/ingest", json={"events": events(3), "x": 1})
    assert response.json() == {"inserted": 3, "rejected": 0, "errors": []}
    assert await count_rows(pg_clean) == 3


@pytest.mark.parametrize("body", [[], {"events": []}])
async def test_an_empty_list_stores_nothing(
    client: AsyncTestClient, pg_clean: AsyncEngine, body: Any
) -> None:
    response = await client.post("/api/requests/ingest/", json=body)
    assert response.status_code == 200
    assert response.json() == {"inserted": 0, "rejected": 0, "errors": []}
    assert await count_rows(pg_clean) == 0


@pytest.mark.parametrize(
    "body", [b"5", b'"events"', b"null", b"{}", b'{"events": 5}', b'{"events": {"a": 1}}']
)
async def test_any_other_shape_is_400_saying_what_was_expected(
    client: AsyncTestClient, body: bytes
) -> None:
    response = await client.post("/api/requests/ingest/", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {
        "detail": 'Expected a JSON array of events, or an object {"events": [...]}.'
    }


@pytest.mark.parametrize("body", [b"[{", b"[1, 2", b"", b'[{"a": "\xff"}]', b"[1,]"])
async def test_malformed_json_is_400_with_the_reason(client: AsyncTestClient, body: bytes) -> None:
    response = await client.post("/api/requests/ingest/", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON: ")


async def test_a_body_that_is_not_json_is_415(client: AsyncTestClient) -> None:
    response = await client.post(
        "/api/requests/ingest/", content=b"[]", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415 and response.json()["detail"]


async def test_wrong_method_is_405(client: AsyncTestClient) -> None:
    assert (await client.get("/api/requests/ingest/")).status_code == 405


INVALID = [
    ({**EVENT, "status_code": "200"}, "status_code"),
    ({**EVENT, "status_code": 700}, "status_code"),
    ({**EVENT, "status_code": True}, "status_code"),
    ({**EVENT, "latency_ms": -5}, "latency_ms"),
    ({**EVENT, "latency_ms": 2**31}, "latency_ms"),
    ({**EVENT, "service": "   "}, "service"),
    ({**EVENT, "service": "x" * 101}, "service"),
    ({**EVENT, "endpoint": "a\x00b"}, "endpoint"),
    ({**EVENT, "method": "FOO"}, "method"),
    ({**EVENT, "tags": []}, "tags"),
    ({**EVENT, "tags": None}, "tags"),
    ({**EVENT, "tags": {"k": "\x00"}}, "tags"),
    ({**EVENT, "tags": {"k": [0] * 300}}, "tags"),
    ({**EVENT, "tags": {"k": "x" * 1025}}, "tags"),
    ({**EVENT, "time": "soon"}, "time"),
    ({**EVENT, "time": "0001-01-01T00:00:00+01:00"}, "time"),
    ({**EVENT, "trace_id": "t" * 129}, "trace_id"),
    ({**EVENT, "user_ref": 5}, "user_ref"),
    ({k: v for k, v in EVENT.items() if k != "service"}, "service"),
]


async def test_invalid_events_are_skipped_with_the_record_api_messages(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    body: list[Any] = []
    expected: list[dict[str, Any]] = []
    for bad, field in INVALID:
        body.append(EVENT)
        single = await client.post("/api/requests/", json=bad)
        assert single.status_code == 400 and field in single.json()["errors"], bad
        expected.append({"index": len(body), "errors": single.json()["errors"]})
        body.append(bad)
    body.extend([7, "event", None, [EVENT]])
    expected.extend(
        {"index": index, "errors": {"non_field_errors": ["Each event must be a JSON object."]}}
        for index in range(len(body) - 4, len(body))
    )
    response = await client.post("/api/requests/ingest/?max_errors=25", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["inserted"] == len(INVALID)
    assert answer["rejected"] == len(INVALID) + 4
    assert answer["errors"] == expected[:25]
    assert await count_rows(pg_clean) == len(INVALID)


async def test_events_the_fast_path_doubts_are_still_accepted(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    big_tags = {f"key{i}": "v" * 40 for i in range(100)}
    body = [
        {**EVENT, "status_code": 200.0, "latency_ms": 5.0},
        {**EVENT, "method": "gEt", "tags": big_tags},
        {**EVENT, "tags": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {}}}}}}}}},
        {**EVENT, "tags": {"list": list(range(256)), "escaped": "\\u0000 is text"}},
        {**EVENT, "tags": {"n": 1}, "time": "2025-12-14T12:00:00.1234567Z"},
    ]
    response = await client.post("/api/requests/ingest/", json=body)
    assert response.json() == {"inserted": 5, "rejected": 0, "errors": []}
    rows = await stored(pg_clean)
    assert (rows[0]["status_code"], rows[0]["latency_ms"]) == (200, 5)
    assert rows[1]["tags"] == big_tags and rows[1]["method"] == "GET"
    assert rows[2]["tags"] == body[2]["tags"]
    assert rows[3]["tags"] == body[3]["tags"]
    assert rows[4]["time"] == datetime(2025, 12, 14, 12, 0, 0, 123456, tzinfo=UTC)


async def test_numbers_with_huge_exponents_in_tags_are_handled_as_the_record_api_does(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    # jsonb would expand 1e300 to 301 digits and refuse 1e-20000; the record API stores what
    # the JSON parser makes of them, and so does ingest.
    raw = (
        b'{"time": "2025-12-14T12:00:00Z", "service": "s", "endpoint": "/e", "method": "GET",'
        b' "status_code": 200, "latency_ms": 1, "tags": {"large": 1e300, "tiny": 1e-20000,'
        b' "fine": 1.5e10, "e123": "e123"}}'
    )
    response = await client.post("/api/requests/ingest/", content=b"[" + raw + b"]", headers=JSON)
    assert response.json() == {"inserted": 1, "rejected": 0, "errors": []}
    single = await client.post("/api/requests/", content=raw, headers=JSON)
    assert single.status_code == 201
    rows = await stored(pg_clean)
    assert rows[0]["tags"] == rows[1]["tags"] == single.json()["tags"]
    assert (rows[0]["tags"]["tiny"], rows[0]["tags"]["e123"]) == (0, "e123")

    out_of_range = raw.replace(b"1e300", b"1e131071")
    single = await client.post("/api/requests/", content=out_of_range, headers=JSON)
    bulk = await client.post(
        "/api/requests/ingest/", content=b"[" + out_of_range + b"]", headers=JSON
    )
    assert single.status_code == bulk.status_code == 400
    assert bulk.json()["detail"].startswith("Malformed JSON: Number out of range")
    assert await count_rows(pg_clean) == 2


async def test_numbers_longer_than_jsonb_takes_are_stored_as_the_record_api_does(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    # jsonb refuses more than 16383 digits after the point; such a number only fits in tags
    # larger than the text kept as sent, and the record API stores the float it decodes to.
    raw = (
        b'{"time": "2025-12-14T12:00:00Z", "service": "s", "endpoint": "/e", "method": "GET",'
        b' "status_code": 200, "latency_ms": 1, "tags": {"tiny": 0.' + b"0" * 17000 + b"1,"
        b' "big": ' + b"1" * 300 + b".5}}"
    )
    response = await client.post("/api/requests/ingest/", content=b"[" + raw + b"]", headers=JSON)
    assert response.json() == {"inserted": 1, "rejected": 0, "errors": []}
    single = await client.post("/api/requests/", content=raw, headers=JSON)
    assert single.status_code == 201
    rows = await stored(pg_clean)
    assert rows[0]["tags"] == rows[1]["tags"] == single.json()["tags"]
    assert rows[0]["tags"]["tiny"] == 0


async def test_max_errors_limits_the_list_but_every_invalid_event_is_counted(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    body = [{**EVENT, "status_code": 700}] * 10 + events(5)
    answer = (await client.post("/api/requests/ingest/?max_errors=3", json=body)).json()
    assert answer["inserted"] == 5 and answer["rejected"] == 10
    assert [error["index"] for error in answer["errors"]] == [0, 1, 2]
    answer = (await client.post("/api/requests/ingest/?max_errors=0", json=body)).json()
    assert answer == {"inserted": 5, "rejected": 10, "errors": []}
    assert await count_rows(pg_clean) == 10


async def test_too_many_events_is_413_and_nothing_is_stored(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    response = await client.post("/api/requests/ingest/?max_events=3", json=events(4))
    assert response.status_code == 413
    assert response.json() == {
        "detail": "Too many events: got 4, max allowed is 3.",
        "max_events": 3,
    }
    assert (await client.post("/api/requests/ingest/?max_events=3", json=events(3))).json()[
        "inserted"
    ] == 3
    assert await count_rows(pg_clean) == 3


async def test_the_setting_bounds_max_events(pg_url: str, pg_clean: AsyncEngine) -> None:
    async with await make_client(pg_url, ingest_max_events=5, ingest_max_errors=2) as client:
        response = await client.post("/api/requests/ingest/", json=events(6))
        assert response.status_code == 413
        assert response.json() == {
            "detail": "Too many events: got 6, max allowed is 5.",
            "max_events": 5,
        }
        response = await client.post("/api/requests/ingest/?max_events=6", json=events(1))
        assert response.status_code == 400
        assert response.json()["errors"] == {"max_events": ["max_events must be between 1 and 5."]}
        response = await client.post("/api/requests/ingest/?max_errors=3", json=events(1))
        assert response.json()["errors"] == {"max_errors": ["max_errors must be between 0 and 2."]}
        body = [{**EVENT, "latency_ms": -1}] * 4
        answer = (await client.post("/api/requests/ingest/", json=body)).json()
        assert answer["rejected"] == 4 and len(answer["errors"]) == 2
    assert await count_rows(pg_clean) == 0


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("max_events=0", "max_events"),
        ("max_events=abc", "max_events"),
        ("max_events=50001", "max_events"),
        ("max_errors=-1", "max_errors"),
        ("max_errors=2.5", "max_errors"),
        ("max_errors=26", "max_errors"),
        ("batch_size=0", "batch_size"),
        ("batch_size=-3", "batch_size"),
        ("batch_size=ten", "batch_size"),
        ("strict=maybe", "strict"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    client: AsyncTestClient, pg_clean: AsyncEngine, query: str, param: str
) -> None:
    response = await client.post(f"/api/requests/ingest/?{query}", json=events(2))
    assert response.status_code == 400
    payload = response.json()
    assert payload["detail"] and list(payload["errors"]) == [param], payload
    assert await count_rows(pg_clean) == 0


async def test_batch_size_splits_the_write_and_a_large_one_is_clamped(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    for query in (
        "batch_size=7",
        "batch_size=1",
        "batch_size=999999999999",
        "max_events=30&batch_size=31",
    ):
        response = await client.post(f"/api/requests/ingest/?{query}", json=events(30))
        assert response.json() == {"inserted": 30, "rejected": 0, "errors": []}, query
    rows = await stored(pg_clean)
    assert len(rows) == 120
    assert [row["latency_ms"] for row in rows] == list(range(30)) * 4


@pytest.mark.parametrize("flag", ["true", "1", "yes", "on", "TRUE"])
async def test_strict_mode_refuses_the_whole_request(
    client: AsyncTestClient, pg_clean: AsyncEngine, flag: str
) -> None:
    before = await client.post("/api/requests/ingest/", json=events(2))
    assert before.json()["inserted"] == 2
    table_before = await stored(pg_clean)
    body = events(3) + [{**EVENT, "method": "FOO"}, 5] + events(1)
    response = await client.post(f"/api/requests/ingest/?strict={flag}&max_errors=1", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["detail"]
    assert {k: v for k, v in payload.items() if k != "detail"} == {
        "inserted": 0,
        "rejected": 6,
        "errors": [
            {
                "index": 3,
                "errors": {
                    "method": [
                        "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS."
                    ]
                },
            }
        ],
    }
    assert await stored(pg_clean) == table_before


@pytest.mark.parametrize("flag", ["false", "0", "no", "off"])
async def test_strict_off_and_strict_with_valid_events_store(
    client: AsyncTestClient, pg_clean: AsyncEngine, flag: str
) -> None:
    answer = (
        await client.post(f"/api/requests/ingest/?strict={flag}", json=events(2) + [1])
    ).json()
    assert (answer["inserted"], answer["rejected"]) == (2, 1)
    answer = (await client.post("/api/requests/ingest/?strict=true", json=events(2))).json()
    assert answer == {"inserted": 2, "rejected": 0, "errors": []}
    assert await count_rows(pg_clean) == 4


async def test_a_gzip_body_is_accepted(client: AsyncTestClient, pg_clean: AsyncEngine) -> None:
    response = await client.post(
        "/api/requests/ingest/",
        content=gzip.compress(msgspec.json.encode(events(50))),
        headers={**JSON, "content-encoding": "gzip"},
    )
    assert response.json() == {"inserted": 50, "rejected": 0, "errors": []}
    assert await count_rows(pg_clean) == 50


def gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, built without holding them (1 GiB -> ~1 MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    bomb = gzip_of_zeros(1 << 30)
    assert len(bomb) < 2 << 20
    return bomb


async def test_a_gzip_bomb_is_413_and_stores_nothing(
    pg_url: str, pg_clean: AsyncEngine, gzip_bomb: bytes
) -> None:
    # The write strategy plays no part: one app is enough.
    async with await make_client(pg_url) as client:
        response = await client.post(
            "/api/requests/ingest/",
            content=gzip_bomb,
            headers={**JSON, "content-encoding": "gzip"},
        )
        assert response.status_code == 413
        assert response.json()["detail"]
    assert await count_rows(pg_clean) == 0


async def test_bodies_over_the_limit_are_413_compressed_or_not(
    pg_url: str, pg_clean: AsyncEngine
) -> None:
    payload = msgspec.json.encode(events(200))
    assert len(payload) > 20_000
    async with await make_client(pg_url, max_body_bytes=20_000) as client:
        plain = await client.post("/api/requests/ingest/", content=payload, headers=JSON)
        assert plain.status_code == 413 and plain.json()["detail"]
        packed = gzip.compress(payload)
        assert len(packed) < 20_000
        inflated = await client.post(
            "/api/requests/ingest/", content=packed, headers={**JSON, "content-encoding": "gzip"}
        )
        assert inflated.status_code == 413 and inflated.json()["detail"]
        fits = await client.post(
            "/api/requests/ingest/",
            content=gzip.compress(msgspec.json.encode(events(20))),
            headers={**JSON, "content-encoding": "gzip"},
        )
        assert fits.json()["inserted"] == 20
    assert await count_rows(pg_clean) == 20


async def test_concurrent_requests_store_every_event(
    client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    bodies = [msgspec.json.encode(events(1000, service=f"svc-{n}")) for n in range(20)]
    responses = await asyncio.gather(
        *(client.post("/api/requests/ingest/", content=body, headers=JSON) for body in bodies)
    )
    assert [r.json() for r in responses] == [{"inserted": 1000, "rejected": 0, "errors": []}] * 20
    async with pg_clean.connect() as connection:
        per_service = (
            await connection.execute(
                text("SELECT service, count(*) FROM api_requests GROUP BY service")
            )
        ).all()
    assert sorted(per_service) == sorted((f"svc-{n}", 1000) for n in range(20))
    assert await count_rows(pg_clean) == 20_000
