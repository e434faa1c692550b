"""/metrics: Prometheus text, labelled by route template, with the ingest counters."""

from __future__ import annotations

from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from apm.api.metrics import record_ingest

EVENT = {
    "time": "2025-12-14T12:00:00Z",
    "service": "metrics-svc",
    "endpoint": "/orders",
    "method": "GET",
    "status_code": 200,
    "latency_ms": 12,
}


async def scrape(client: AsyncTestClient) -> dict[tuple[str, tuple], float]:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_labelled_by_route_template_never_by_raw_id(
    pg_client: AsyncTestClient,
) -> None:
    record_id = (await pg_client.post("/api/requests/", json=EVENT)).json()["id"]
    before = await scrape(pg_client)
    for _ in range(3):
        assert (await pg_client.get(f"/api/requests/{record_id}/")).status_code == 200
    assert (await pg_client.get("/api/requests/987654321/")).status_code == 404
    after = await scrape(pg_client)

    template = "/api/requests/{request_id}"
    labels = {"app_name": "apm", "method": "GET", "path": template}
    ok = value(after, "apm_requests_total", **labels, status_code="200") - value(
        before, "apm_requests_total", **labels, status_code="200"
    )
    missing = value(after, "apm_requests_total", **labels, status_code="404") - value(
        before, "apm_requests_total", **labels, status_code="404"
    )
    assert (ok, missing) == (3, 1)
    assert value(after, "apm_request_duration_seconds_count", **labels, status_code="200") >= 3

    paths = {dict(labels_)["path"] for (_, labels_) in after if "path" in dict(labels_)}
    assert template in paths
    assert not any(str(record_id) in path or "987654321" in path for path in paths)
    assert "/metrics" not in paths  # scrapes are not counted as traffic


async def test_unknown_paths_add_no_series(pg_client: AsyncTestClient) -> None:
    assert (await pg_client.get("/scanner/probe/12345")).status_code == 404
    samples = await scrape(pg_client)
    assert not any("12345" in str(labels) for (_, labels) in samples)


async def test_ingest_counters_exist_from_the_start_and_move(pg_client: AsyncTestClient) -> None:
    before = await scrape(pg_client)
    assert ("apm_ingest_events_total", (("outcome", "inserted"),)) in before
    assert ("apm_ingest_events_total", (("outcome", "rejected"),)) in before

    record_ingest(inserted=7, rejected=2)
    record_ingest(inserted=0, rejected=0)
    after = await scrape(pg_client)

    def moved(outcome: str) -> float:
        name = "apm_ingest_events_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert (moved("inserted"), moved("rejected")) == (7, 2)


async def test_ingest_requests_move_the_counters(pg_client: AsyncTestClient) -> None:
    bad = {**EVENT, "status_code": 700}
    before = await scrape(pg_client)

    mixed = await pg_client.post("/api/requests/ingest/", json=[EVENT, bad, EVENT, "x"])
    assert mixed.json()["inserted"] == 2 and mixed.json()["rejected"] == 2
    strict = await pg_client.post("/api/requests/ingest/?strict=true", json=[EVENT, bad, EVENT])
    assert strict.status_code == 400 and strict.json()["rejected"] == 3
    assert (await pg_client.post("/api/requests/ingest/", json=[EVENT])).status_code == 200
    after = await scrape(pg_client)

    def moved(outcome: str) -> float:
        name = "apm_ingest_events_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert (moved("inserted"), moved("rejected")) == (3, 5)
    ingest = {"app_name": "apm", "method": "POST", "path": "/api/requests/ingest"}
    assert value(after, "apm_requests_total", **ingest, status_code="400") - value(
        before, "apm_requests_total", **ingest, status_code="400"
    ) == 1


def test_several_workers_report_one_sum(pg_url: str, pg_clean) -> None:
    import httpx

    from tests.support.live_server import live_server

    with live_server(pg_url, workers=2) as server:
        created = httpx.post(server.url("/api/requests/"), json=EVENT, timeout=10)
        record = created.json()["id"]
        for _ in range(20):
            # A new connection each time, so both workers take some of them.
            assert httpx.get(server.url(f"/api/requests/{record}/"), timeout=10).status_code == 200
        scrapes = [httpx.get(server.url("/metrics"), timeout=10).text for _ in range(4)]

    labels = 'app_name="apm",method="GET",path="/api/requests/{request_id}",status_code="200"'
    for text in scrapes:
        line = next(line for line in text.splitlines()
                    if line.startswith(f"apm_requests_total{{{labels}}}"))
        assert float(line.rsplit(" ", 1)[1]) == 20
