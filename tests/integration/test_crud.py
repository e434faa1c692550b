"""CRUD and list (spec 2.2) against a real PostgreSQL, through HTTP."""

from __future__ import annotations

import gzip

import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

EVENT = {
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


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(text("SELECT count(*) FROM api_requests"))).scalar_one()


async def test_create_read_patch_put_delete(pg_client: AsyncTestClient, pg_clean: AsyncEngine) -> None:
    created = await pg_client.post("/api/requests/", json=EVENT)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["time"] == "2025-12-14T12:00:00Z"
    assert created.headers["location"] == f"/api/requests/{record['id']}/"
    assert {k: record[k] for k in EVENT} == EVENT

    read = await pg_client.get(f"/api/requests/{record['id']}")
    assert read.status_code == 200 and read.json() == record

    patched = await pg_client.patch(f"/api/requests/{record['id']}/", json={"latency_ms": 5})
    assert patched.status_code == 200
    assert patched.json() == {**record, "latency_ms": 5}

    replaced = await pg_client.put(
        f"/api/requests/{record['id']}/", json={**EVENT, "method": "post", "tags": {}}
    )
    assert replaced.status_code == 200
    assert replaced.json()["method"] == "POST" and replaced.json()["tags"] == {}

    deleted = await pg_client.delete(f"/api/requests/{record['id']}/")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await pg_client.get(f"/api/requests/{record['id']}/")).status_code == 404
    assert (await pg_client.delete(f"/api/requests/{record['id']}/")).status_code == 404
    assert await count_rows(pg_clean) == 0


async def test_put_needs_every_required_field(pg_client: AsyncTestClient) -> None:
    record = (await pg_client.post("/api/requests/", json=EVENT)).json()
    response = await pg_client.put(f"/api/requests/{record['id']}/", json={"latency_ms": 1})
    assert response.status_code == 400
    assert "service" in response.json()["errors"]


async def test_bad_input_is_refused_and_nothing_is_written(
    pg_client: AsyncTestClient, pg_clean: AsyncEngine
) -> None:
    cases = [
        ({**EVENT, "status_code": "200"}, "status_code"),
        ({**EVENT, "status_code": 700}, "status_code"),
        ({**EVENT, "latency_ms": -5}, "latency_ms"),
        ({**EVENT, "service": "   "}, "service"),
        ({**EVENT, "method": "FOO"}, "method"),
        ({**EVENT, "tags": []}, "tags"),
        ({**EVENT, "time": "soon"}, "time"),
    ]
    for body, field in cases:
        response = await pg_client.post("/api/requests/", json=body)
        assert response.status_code == 400, body
        payload = response.json()
        assert payload["detail"] and field in payload["errors"], payload
    malformed = await pg_client.post(
        "/api/requests/", content=b'{"service": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and "Malformed JSON" in malformed.json()["detail"]
    wrong_type = await pg_client.post(
        "/api/requests/", content=b"service=x", headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415 and wrong_type.json()["detail"]
    assert await count_rows(pg_clean) == 0


async def test_unknown_id_and_wrong_method(pg_client: AsyncTestClient) -> None:
    assert (await pg_client.get("/api/requests/999999/")).json() == {
        "detail": "No request with id 999999."
    }
    assert (await pg_client.get("/api/requests/99999999999999999999/")).status_code == 404
    assert (await pg_client.patch("/api/requests/999999/", json={"latency_ms": 1})).status_code == 404
    assert (await pg_client.put("/api/requests/")).status_code == 405


async def test_gzip_body_is_accepted(pg_client: AsyncTestClient) -> None:
    response = await pg_client.post(
        "/api/requests",
        content=gzip.compress(msgspec.json.encode(EVENT)),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 201, response.text


async def seed(client: AsyncTestClient) -> None:
    rows = [
        ("2025-12-14T10:00:00Z", "auth", "/login", "POST", 200, 30, "t-1", "u-1"),
        ("2025-12-14T11:00:00Z", "auth", "/login", "POST", 500, 300, "t-2", "u-2"),
        ("2025-12-14T11:00:00Z", "auth", "/logout", "POST", 200, 10, None, "u-1"),
        ("2025-12-14T12:00:00Z", "auth", "/blog", "GET", 404, 20, "t-3", None),
        ("2025-12-14T12:00:00Z", "billing", "/login", "GET", 200, 40, None, None),
        ("2025-12-14T13:00:00Z", "auth", "/users", "GET", 201, 50, "catalog", None),
    ]
    for time, service, endpoint, method, status, latency, trace, user in rows:
        response = await client.post(
            "/api/requests/",
            json={"time": time, "service": service, "endpoint": endpoint, "method": method,
                  "status_code": status, "latency_ms": latency, "trace_id": trace,
                  "user_ref": user},
        )
        assert response.status_code == 201


async def test_list_filters_search_ordering(pg_client: AsyncTestClient) -> None:
    await seed(pg_client)
    response = await pg_client.get(
        "/api/requests/?ordering=-time,latency_ms&service=auth"
        "&status_code__in=200,500&search=log"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [(r["endpoint"], r["latency_ms"]) for r in body["results"]] == [
        ("/logout", 10), ("/login", 300), ("/login", 30)
    ]
    slashless = await pg_client.get(
        "/api/requests?ordering=-time,latency_ms&service=auth&status_code__in=200,500&search=log"
    )
    assert slashless.json() == body


async def test_list_search_terms_all_match(pg_client: AsyncTestClient) -> None:
    await seed(pg_client)
    body = (await pg_client.get("/api/requests/?search=auth,u-1")).json()
    assert {r["endpoint"] for r in body["results"]} == {"/login", "/logout"}
    injection = await pg_client.get("/api/requests/?search=%27%3B%20DROP%20TABLE%20api_requests%3B--")
    assert injection.status_code == 200 and injection.json()["count"] == 0
    percent = await pg_client.get("/api/requests/?search=%25")
    assert percent.json()["count"] == 0


async def test_list_other_filters(pg_client: AsyncTestClient) -> None:
    await seed(pg_client)

    async def endpoints(query: str) -> list[str]:
        response = await pg_client.get(f"/api/requests/?{query}&ordering=time,endpoint")
        assert response.status_code == 200, response.text
        return [r["endpoint"] for r in response.json()["results"]]

    assert await endpoints("method=get") == ["/blog", "/login", "/users"]
    assert await endpoints("status_code=404") == ["/blog"]
    assert await endpoints("latency_min=40&latency_max=50") == ["/login", "/users"]
    assert await endpoints("time_after=2025-12-14T12:00:00Z&time_before=2025-12-14T12:00:00Z") == [
        "/blog", "/login"
    ]
    assert await endpoints("time_before=2025-12-13") == []
    assert len(await endpoints("time_before=2025-12-14")) == 6
    assert await endpoints("trace_id=t-2") == ["/login"]
    assert await endpoints("user_ref=u-1") == ["/login", "/logout"]
    assert await endpoints("endpoint=/users&unknown=1") == ["/users"]


async def test_pagination(pg_client: AsyncTestClient) -> None:
    await seed(pg_client)
    first = (await pg_client.get("/api/requests/?page_size=4")).json()
    assert first["count"] == 6 and len(first["results"]) == 4
    assert first["next"].endswith("/api/requests/?page_size=4&page=2")
    second = (await pg_client.get("/api/requests/?page_size=4&page=2")).json()
    assert len(second["results"]) == 2 and second["next"] is None
    assert second["previous"].endswith("/api/requests/?page_size=4")
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(set(ids)) == 6
    past = await pg_client.get("/api/requests/?page_size=4&page=3")
    assert past.status_code == 404 and past.json() == {"detail": "Invalid page."}


async def test_bad_list_parameters(pg_client: AsyncTestClient) -> None:
    for query, param in [("ordering=tags", "ordering"), ("page=abc", "page"),
                         ("page_size=5000", "page_size"), ("status_code__in=2x", "status_code__in")]:
        response = await pg_client.get(f"/api/requests/?{query}")
        assert response.status_code == 400
        assert list(response.json()["errors"]) == [param]


async def test_health(pg_client: AsyncTestClient) -> None:
    assert (await pg_client.get("/api/health")).json()["status"] == "ok"
    body = (await pg_client.get("/api/health/?db=1")).json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["backend"] == "postgres"
