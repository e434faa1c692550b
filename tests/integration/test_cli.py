"""The `apm` command line against a real PostgreSQL: help, check and seed."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.cli import main
from apm.logs import configure_logging
from tests.support.postgres import create_database, drop_database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # The commands point logging at the runner's captured stderr, which closes afterwards.
    yield
    configure_logging("INFO", "auto")


def run(args: list[str], url: str | None, **env: str) -> Result:
    environ = {"APM_LOG_FORMAT": "json", "APM_DATABASE_URL": url or "", **env}
    return CliRunner().invoke(main, args, env=environ, catch_exceptions=False)


@pytest.fixture
def scratch_url(pg_server: str) -> Iterator[str]:
    """An empty database: no migration applied."""
    url, name = asyncio.run(create_database(pg_server))
    yield url
    asyncio.run(drop_database(pg_server, name))


def test_every_command_has_help() -> None:
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0
    commands = [name for name in main.commands]  # type: ignore[attr-defined]
    assert {"serve", "migrate", "seed", "check"} <= set(commands)
    for name in commands:
        for flag in ("--help", "-h"):
            shown = CliRunner().invoke(main, [name, flag])
            assert shown.exit_code == 0, (name, shown.output)
            assert f"Usage: main {name}" in shown.output or f"Usage: apm {name}" in shown.output
            assert main.commands[name].help, name  # type: ignore[attr-defined]


def test_check_reports_a_healthy_plain_database(pg_url: str) -> None:
    result = run(["check"], pg_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "backend      postgres (APM_BACKEND=auto)" in out
    assert "postgresql   " in out
    assert "timescaledb  not installed" in out and "maintained by the service" in out
    assert "up to date" in out
    assert "api_requests (table)" in out
    assert "status       ok" in out
    assert "password" not in out


def test_check_json_names_the_revision_and_head(pg_url: str) -> None:
    result = run(["check", "--json"], pg_url)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "postgres"
    assert report["revision"] == report["head"]
    assert report["timescaledb_installed"] is None
    assert report["problems"] == []
    assert int(report["server_version"].split(".")[0]) >= 15


def test_check_fails_when_migrations_are_missing(scratch_url: str) -> None:
    result = run(["check"], scratch_url)
    assert result.exit_code == 1
    assert "No migration has been applied: run `apm migrate`." in result.stdout

    report = json.loads(run(["check", "--json"], scratch_url).stdout)
    assert report["revision"] is None and report["problems"]


def test_check_fails_when_migrations_are_behind(scratch_url: str) -> None:
    from apm.adapters.migrations import downgrade, upgrade

    upgrade(scratch_url)
    assert run(["check"], scratch_url).exit_code == 0
    heads = json.loads(run(["check", "--json"], scratch_url).stdout)["head"]
    downgrade(scratch_url, "-1")
    result = run(["check"], scratch_url)
    assert result.exit_code == 1
    assert "BEHIND" in result.stdout or "No migration" in result.stdout
    assert heads in result.stdout


def test_check_fails_when_the_database_is_unreachable() -> None:
    url = f"postgresql+asyncpg://apm:secret@127.0.0.1:{free_port()}/apm"
    result = run(["check"], url, APM_DB_CONNECT_TIMEOUT="2")
    assert result.exit_code == 1
    assert "Database unreachable" in result.output
    assert "secret" not in result.output


def test_check_refuses_timescale_backend_without_the_extension(pg_url: str) -> None:
    result = run(["check"], pg_url, APM_BACKEND="timescale")
    assert result.exit_code == 1
    assert "timescaledb extension is not installed" in result.stdout


async def _rows(engine: AsyncEngine, sql: str) -> list:
    async with engine.connect() as connection:
        return list(await connection.execute(text(sql)))


async def test_seed_writes_realistic_events(pg_url: str, pg_clean: AsyncEngine) -> None:
    started = datetime.now(UTC)
    result = await asyncio.to_thread(
        run,
        ["seed", "--count", "1500", "--days", "2", "--services", "3",
         "--endpoints-per-service", "4", "--batch-size", "400", "--seed", "11"],
        pg_url,
    )
    assert result.exit_code == 0, result.output
    assert "Stored 1500 events" in result.stdout

    (summary,) = await _rows(
        pg_clean,
        "SELECT count(*), count(DISTINCT service), count(DISTINCT (service, endpoint, method)),"
        " min(time), max(time), count(*) FILTER (WHERE status_code >= 500),"
        " count(DISTINCT trace_id) FROM api_requests",
    )
    count, services, endpoints, first, last, server_errors, traces = summary
    assert (count, services, endpoints, traces) == (1500, 3, 12, 1500)
    assert started - timedelta(days=2, minutes=1) <= first and last <= datetime.now(UTC)
    assert 0 < server_errors < 150


async def test_seed_refuses_an_unmigrated_database(scratch_url: str) -> None:
    result = await asyncio.to_thread(run, ["seed", "--count", "10"], scratch_url)
    assert result.exit_code == 1
    assert "run `apm migrate` first" in result.output


def test_seed_via_api_reports_an_unreachable_server() -> None:
    result = run(["seed", "--count", "5", "--via-api", f"http://127.0.0.1:{free_port()}"], None)
    assert result.exit_code == 1
    assert "Cannot reach" in result.output


# The TimescaleDB test engine serves one connection at a time (tests/conftest.py).
ON_TIMESCALE = {"APM_BACKEND": "timescale", "APM_DB_POOL_SIZE": "1", "APM_DB_MAX_OVERFLOW": "0"}


async def test_check_reports_timescaledb_its_aggregates_and_their_jobs(ts_url: str) -> None:
    result = await asyncio.to_thread(run, ["check", "--json"], ts_url, **ON_TIMESCALE)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "timescale" and report["problems"] == []
    assert report["timescaledb_installed"]
    assert report["hypertable"] is True
    caggs = {cagg["name"]: cagg for cagg in report["continuous_aggregates"]}
    assert set(caggs) >= {"api_requests_hourly", "api_requests_daily"}
    assert all(cagg["realtime"] for cagg in caggs.values())
    refreshed = {job["relation"] for job in report["jobs"] if job["kind"] == "refresh"}
    assert refreshed >= {"api_requests_hourly", "api_requests_daily"}

    text_result = await asyncio.to_thread(run, ["check"], ts_url, **ON_TIMESCALE)
    out = text_result.stdout
    assert "backend      timescale" in out and "(installed)" in out
    assert "hypertable   api_requests" in out
    assert "api_requests_hourly (real-time)" in out
    assert "refresh api_requests_daily every" in out
    assert "status       ok" in out


async def test_seed_via_api_posts_batches_with_the_ingest_key(
    pg_url: str, pg_clean: AsyncEngine
) -> None:
    from tests.support.live_server import live_server

    key = "seed-key-0123456789abcdef"
    with live_server(pg_url, env={"APM_INGEST_KEYS": key}) as server:
        refused = await asyncio.to_thread(
            run, ["seed", "--count", "10", "--via-api", server.base_url], None
        )
        stored = await asyncio.to_thread(
            run,
            ["seed", "--count", "700", "--batch-size", "300", "--services", "2",
             "--via-api", server.base_url],
            None,
            APM_API_KEY=key,
        )
    assert refused.exit_code == 1 and "401" in refused.output
    assert key not in refused.output
    assert stored.exit_code == 0, stored.output
    assert "Stored 700 events" in stored.stdout
    ((count, services),) = await _rows(
        pg_clean, "SELECT count(*), count(DISTINCT service) FROM api_requests"
    )
    assert (count, services) == (700, 2)
