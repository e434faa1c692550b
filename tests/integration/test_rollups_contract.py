"""GET /api/requests/hourly/ and /daily/ (spec 2.5) on both backends, through HTTP: the same
events give the same rows, equal to a Python reference, whether the rollups are fresh,
materialised (refreshed), or updated by late writes, edits and deletes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.cli import main
from apm.logs import configure_logging
from tests.support.reference import (
    DAY,
    HOUR,
    Event,
    canonical,
    endpoint_rows,
    make_events,
    to_json,
)

START = datetime(2025, 3, 1, tzinfo=UTC)
SPAN = timedelta(days=3)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# (query parameters, the window they mean)
WINDOWS: list[tuple[dict[str, str], datetime, datetime]] = [
    ({"start": "2025-03-01", "end": "2025-03-03"}, START, START + SPAN),  # a date-only end
    (
        {"start": "2025-03-01T05:30:00Z", "end": "2025-03-02T07:15:00Z"},
        utc("2025-03-01T05:30:00+00:00"), utc("2025-03-02T07:15:00+00:00"),
    ),
    (
        {"start": "2025-03-02T01:00:00+02:00", "end": "2025-03-03T00:00:00Z"},
        utc("2025-03-02T01:00:00+02:00"), utc("2025-03-03T00:00:00+00:00"),
    ),
]
FILTERS: list[dict[str, str]] = [
    {}, {"service": "Zeta"}, {"service": "billing", "endpoint": "/health"}, {"method": "get"}
]


class Served(NamedTuple):
    client: AsyncTestClient
    engine: AsyncEngine
    cli_env: dict[str, str]
    """The environment for `apm` commands on the same database."""


@pytest.fixture(params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)])
def served(request: pytest.FixtureRequest) -> Served:
    """The client of an app on each backend's test database (emptied for this test), its
    engine, and what `apm` needs to reach the same database.

    A plain fixture: the session fixtures behind these start servers outside the event loop.
    """
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        env = {"APM_BACKEND": "postgres"}
        prefix = "pg"
    else:
        url = request.getfixturevalue("ts_url")
        # The test engine serves one connection at a time (tests/conftest.py).
        env = {"APM_BACKEND": "timescale", "APM_DB_POOL_SIZE": "1", "APM_DB_MAX_OVERFLOW": "0"}
        prefix = "ts"
    return Served(
        client=request.getfixturevalue(f"{prefix}_client"),
        engine=request.getfixturevalue(f"{prefix}_clean"),
        cli_env={"APM_DATABASE_URL": url, "APM_LOG_FORMAT": "json", **env},
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # `apm` points logging at the runner's captured stderr, which closes afterwards.
    yield
    configure_logging("INFO", "auto")


async def ingest(client: AsyncTestClient, events: list[Event]) -> None:
    answer = await client.post("/api/requests/ingest/", json=to_json(events))
    assert answer.status_code == 200, answer.text
    assert answer.json()["inserted"] == len(events)


def matching(events: list[Event], filters: dict[str, str]) -> list[Event]:
    return [
        e for e in events
        if e.service == filters.get("service", e.service)
        and e.endpoint == filters.get("endpoint", e.endpoint)
        and e.method == filters.get("method", e.method).upper()
    ]


async def answered(client: AsyncTestClient, kind: str, params: dict[str, str]) -> list[dict]:
    answer = await client.get(f"/api/requests/{kind}/", params={**params, "limit": "5000"})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def assert_all_windows(client: AsyncTestClient, events: list[Event]) -> None:
    for params, start, end in WINDOWS:
        for filters in FILTERS:
            for kind, step in (("hourly", HOUR), ("daily", DAY)):
                wanted = endpoint_rows(
                    matching(events, filters), step, start=start, end=end, limit=5000
                )
                got = await answered(client, kind, {**params, **filters})
                assert canonical(got) == canonical(wanted), (kind, params, filters)


async def eventually(client: AsyncTestClient, events: list[Event]) -> None:
    """Late writes must show within the 5 s the TimescaleDB refresher has (at once on the
    plain backend); then every window and filter must match."""
    params, start, end = WINDOWS[0]
    wanted = {
        kind: canonical(endpoint_rows(events, step, start=start, end=end, limit=5000))
        for kind, step in (("hourly", HOUR), ("daily", DAY))
    }
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        got = {kind: canonical(await answered(client, kind, params)) for kind in wanted}
        if got == wanted:
            break
        await asyncio.sleep(0.1)
    await assert_all_windows(client, events)


async def refresh(served: Served) -> None:
    """`apm refresh` over the whole data set, as an operator would (its own event loop)."""
    for granularity in ("hourly", "daily"):
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            ["refresh", granularity, "--start", "2025-03-01", "--end", "2025-03-03"],
            env=served.cli_env,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output


async def test_fresh_events_are_in_the_rollups(served: Served) -> None:
    client = served.client
    events = make_events(1500, start=START, span=SPAN, seed=21)
    await ingest(client, events)
    await assert_all_windows(client, events)


async def test_refreshed_rollups_stay_exact_through_late_writes_edits_and_deletes(
    served: Served,
) -> None:
    client = served.client
    events = make_events(1200, start=START, span=SPAN, seed=22)
    await ingest(client, events)
    await refresh(served)
    await assert_all_windows(client, events)

    late = make_events(150, start=START + timedelta(hours=7), span=timedelta(days=2), seed=23)
    await ingest(client, late)
    events += late
    await eventually(client, events)

    # Edits and deletes of stored events: both the old and the new buckets change.
    listed = await client.get(
        "/api/requests/", params={"ordering": "time", "page_size": "6", "service": "auth"}
    )
    records = listed.json()["results"]
    assert len(records) == 6
    stored: dict[int, Event] = {
        r["id"]: Event(utc(r["time"]), r["service"], r["endpoint"], r["method"],
                       r["status_code"], r["latency_ms"])
        for r in records
    }
    changes: list[tuple[int, dict[str, Any]]] = [
        (records[0]["id"], {"time": "2025-03-03T22:15:00Z"}),
        (records[1]["id"], {"time": "2025-03-02T00:00:00Z", "status_code": 503}),
        (records[2]["id"], {"latency_ms": 123456, "method": "post"}),
    ]
    for record_id, change in changes:
        answer = await client.patch(f"/api/requests/{record_id}/", json=change)
        assert answer.status_code == 200, answer.text
        r = answer.json()
        stored[record_id] = Event(utc(r["time"]), r["service"], r["endpoint"], r["method"],
                                  r["status_code"], r["latency_ms"])
    for record in records[3:5]:
        assert (await client.delete(f"/api/requests/{record['id']}/")).status_code == 204
        del stored[record["id"]]

    originals = {
        Event(utc(r["time"]), r["service"], r["endpoint"], r["method"], r["status_code"],
              r["latency_ms"])
        for r in records
    }
    kept = list(events)
    for original in originals:
        kept.remove(original)
    await eventually(client, kept + list(stored.values()))
