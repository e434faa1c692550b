"""The `apm` command line: serve, migrate, seed, check (and the operations commands)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import msgspec

from apm.domain.errors import BackendUnsupported, StorageUnavailable
from apm.domain.ingest import EventBatch
from apm.settings import Settings, SettingsError

if TYPE_CHECKING:
    from apm.adapters.inspect import DatabaseReport
    from apm.app import Storage


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """With no database configured, run the embedded PostgreSQL in APM_DATA_DIR meanwhile."""
    if settings.database_url is not None:
        yield settings
        return
    import structlog

    from apm.adapters.embedded import EmbeddedPostgres

    # A log line, not a bare message: it has the format of every other line of the command.
    structlog.get_logger("apm.cli").info(
        "database.embedded",
        detail="No database configured: using the embedded PostgreSQL.",
        data_dir=str(settings.data_dir),
    )
    server = EmbeddedPostgres(settings.data_dir)
    try:
        yield msgspec.structs.replace(settings, database_url=server.url)
    finally:
        server.close()


def migrate_to_head(settings: Settings) -> None:
    from apm.adapters.migrations import upgrade

    assert settings.database_url is not None
    upgrade(settings.database_url)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="apm")
def main() -> None:
    """apm: store API request events and serve their analytics."""


@main.command()
@click.option("--host", default=None, help="Bind address [default: APM_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: APM_PORT or 8000].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              envvar="APM_WORKERS", show_envvar=True, help="Server processes.")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--no-migrate", is_flag=True, help="Do not apply migrations before serving.")
def serve(host: str | None, port: int | None, workers: int, reload: bool, no_migrate: bool) -> None:
    """Apply migrations and serve the HTTP API (Granian, uvloop)."""
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    with database(configured) as settings:
        if not no_migrate:
            migrate_to_head(settings)
        # The address actually bound decides whether key-less access is warned about.
        settings = msgspec.structs.replace(settings, host=host or settings.host)
        # A signal before the server takes over (during migrations, say) still stops the
        # embedded database on the way out.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        # The server's worker processes build the app themselves (apm.app:app_from_env) from
        # the environment: hand them the resolved database URL (the embedded one too).
        os.environ["APM_DATABASE_URL"] = settings.database_url or ""
        os.environ["APM_HOST"] = settings.host
        with shared_metrics(workers):
            run_server(
                host=settings.host,
                port=settings.port if port is None else port,
                workers=workers,
                reload=reload,
                log_level=settings.log_level,
            )


def run_server(*, host: str, port: int, workers: int, reload: bool, log_level: str) -> None:
    """Serve apm.app:app_from_env with Granian until SIGINT/SIGTERM.

    Granian was measured against Uvicorn (uvloop + httptools) on this app; see
    benchmarks/README.md. Its supervisor process stops the workers gracefully on SIGTERM and
    exits 1 when a worker fails (e.g. the database is unreachable at start-up).
    """
    from pathlib import Path

    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        "apm.app:app_from_env",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        loop=Loops.auto,
        http=HTTPModes.auto,
        websockets=False,
        reload=reload,
        # Watch the package's own source, not the working directory (which may be large).
        reload_paths=[Path(__file__).resolve().parent],
        log_level=LogLevels(log_level.lower()),
        # Granian's records go to the root logger, i.e. through apm.logs like every other
        # line; its access log stays off (apm logs one line per request itself).
        log_dictconfig={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {},
            "handlers": {},
            "loggers": {
                "_granian": {"handlers": [], "propagate": True},
                "granian.access": {"handlers": [], "propagate": False},
            },
        },
        log_access=False,
    ).serve()


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, let /metrics add up every worker's counters.

    prometheus_client's multiprocess mode: each worker writes its samples to files in
    PROMETHEUS_MULTIPROC_DIR, which the workers read at import time, so it is set before they
    start; a directory the caller chose is used as it is.
    """
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="apm-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


@main.command()
def migrate() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    with database(configured) as settings:
        migrate_to_head(settings)
    click.echo("Migrations applied.")


@main.command()
@click.option("--count", type=click.IntRange(1), default=10_000, show_default=True,
              help="Number of events to generate.")
@click.option("--days", type=click.FloatRange(0, min_open=True), default=7.0, show_default=True,
              help="Spread the events over the last D days.")
@click.option("--services", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Number of services.")
@click.option("--endpoints-per-service", type=click.IntRange(1, 144), default=8,
              show_default=True, help="Distinct (endpoint, method) pairs per service.")
@click.option("--via-api", metavar="URL", default=None,
              help="POST the events to a running server at URL (e.g. http://127.0.0.1:8000) "
              "instead of writing to the database.")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=1000, show_default=True,
              help="Events per transaction (or per ingest request with --via-api).")
@click.option("--seed", "random_seed", type=int, default=None,
              help="Random seed, for repeatable data [default: a new one each run].")
@click.option("--api-key", default=None, envvar="APM_API_KEY", show_envvar=True,
              help="Ingest key sent with --via-api (when the server requires one).")
def seed(
    count: int,
    days: float,
    services: int,
    endpoints_per_service: int,
    via_api: str | None,
    batch_size: int,
    random_seed: int | None,
    api_key: str | None,
) -> None:
    """Generate realistic request events and store them (directly or through the API)."""
    import random
    import time
    from datetime import UTC, datetime

    from apm import seeding
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    chunks = seeding.generate(
        count=count,
        days=days,
        now=datetime.now(UTC),
        seed=random.SystemRandom().getrandbits(32) if random_seed is None else random_seed,
        services=services,
        endpoints_per_service=endpoints_per_service,
        chunk_size=batch_size,
    )
    started = time.perf_counter()
    with click.progressbar(length=count, label="Seeding", file=sys.stderr) as bar:
        if via_api:
            stored = _seed_via_api(via_api, chunks, bar, api_key=api_key)
        else:
            with database(configured) as settings:
                stored = asyncio.run(_seed_direct(settings, chunks, bar))
    elapsed = time.perf_counter() - started
    click.echo(
        f"Stored {stored} events for {services} services x {endpoints_per_service} endpoints "
        f"over the last {days:g} days in {elapsed:.1f} s ({stored / max(elapsed, 1e-9):,.0f}/s)."
    )


async def _seed_direct(settings: Settings, chunks: Iterable[EventBatch], bar: Any) -> int:
    from apm.adapters.inspect import inspect_database

    storage = await _open_or_fail(settings)
    try:
        report = await inspect_database(storage.engine)
        if not report.migrations_current:
            raise click.ClickException(
                f"The database is not at the latest migration ({report.revision or 'none'}, "
                f"latest is {report.head}): run `apm migrate` first."
            )
        stored = 0
        for batch in chunks:
            stored += await storage.ports.ingest.store(batch, batch_size=len(batch))
            bar.update(len(batch))
        return stored
    except StorageUnavailable as error:
        raise click.ClickException(f"Database unavailable: {error.reason}") from None
    finally:
        await storage.close()


async def _open_or_fail(settings: Settings) -> Storage:
    from apm.app import open_storage

    try:
        return await open_storage(settings)
    except StorageUnavailable as error:
        raise click.ClickException(f"Database unavailable: {error.reason}") from None
    except BackendUnsupported as error:
        raise click.ClickException(error.detail) from None


def _seed_via_api(
    base_url: str, chunks: Iterable[EventBatch], bar: Any, *, api_key: str | None
) -> int:
    import gzip
    import urllib.error
    import urllib.request

    from apm.seeding import to_json

    url = base_url.rstrip("/") + "/api/requests/ingest/"
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    stored = 0
    for batch in chunks:
        request = urllib.request.Request(
            url,
            data=gzip.compress(to_json(batch), compresslevel=1),
            method="POST",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = msgspec.json.decode(response.read())
        except urllib.error.HTTPError as error:
            raise click.ClickException(
                f"{url} answered {error.code}: {error.read()[:500].decode('utf-8', 'replace')}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise click.ClickException(f"Cannot reach {url}: {error}") from None
        if answer.get("rejected"):
            raise click.ClickException(f"{url} rejected generated events: {answer}")
        stored += int(answer.get("inserted", 0))
        bar.update(len(batch))
    return stored


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(as_json: bool) -> None:
    """Check the database: server, TimescaleDB, migrations, rollups and their jobs.

    Exits 1 when the database cannot be reached, migrations are behind, or an expected
    object is missing.
    """
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    with database(configured) as settings:
        report, backend, problems = asyncio.run(_check(settings))
    if as_json:
        click.echo(
            msgspec.json.encode(
                {**msgspec.structs.asdict(report), "backend": backend, "problems": problems}
            )
        )
    else:
        _print_report(report, backend, wanted=settings.backend, problems=problems)
    if problems:
        sys.exit(1)


async def _check(settings: Settings) -> tuple[DatabaseReport, str, list[str]]:
    from apm.adapters.engine import build_engine
    from apm.adapters.inspect import inspect_database
    from apm.app import resolve_backend

    assert settings.database_url is not None
    engine = build_engine(
        settings.database_url,
        pool_size=1,
        max_overflow=0,
        connect_timeout=settings.db_connect_timeout,
        sslmode=settings.db_sslmode,
    )
    try:
        report = await inspect_database(engine)
        problems: list[str] = []
        try:
            backend = await resolve_backend(engine, settings.backend)
        except BackendUnsupported as error:
            backend = "none"
            problems.append(error.detail)
        return report, backend, [*problems, *report.problems(backend)]
    except StorageUnavailable as error:
        raise click.ClickException(f"Database unreachable: {error.reason}") from None
    finally:
        await engine.dispose()


def _print_report(
    report: DatabaseReport, backend: str, *, wanted: str, problems: list[str]
) -> None:
    def row(name: str, value: str) -> None:
        click.echo(f"{name:<13}{value}")

    row("database", report.database)
    row("backend", f"{backend} (APM_BACKEND={wanted})")
    row("postgresql", report.server_version)
    if report.timescaledb_installed:
        row("timescaledb", f"{report.timescaledb_installed} (installed)")
    else:
        offered = (
            f"the server offers {report.timescaledb_available}; `apm migrate` installs it"
            if report.timescaledb_available
            else "not available on this server"
        )
        row("timescaledb", f"not installed ({offered})")
        click.echo(
            " " * 13 + "plain PostgreSQL backend: rollups are tables maintained by the service, "
            "not continuous aggregates."
        )
    status = "up to date" if report.migrations_current else "BEHIND: run `apm migrate`"
    row("migrations", f"{report.revision or 'none'} (latest {report.head}) {status}")
    row("relations", ", ".join(f"{name} ({kind})" for name, kind in report.relations.items())
        or "none")
    if report.timescaledb_installed:
        row("hypertable", "api_requests" if report.hypertable else "none")
        row("caggs", ", ".join(
            f"{cagg.name} ({'real-time' if cagg.realtime else 'materialized only'})"
            for cagg in report.continuous_aggregates
        ) or "none")
        if not report.jobs:
            row("jobs", "none")
        for index, job in enumerate(report.jobs):
            settings_text = ", ".join(f"{key}={value}" for key, value in job.config.items()
                                      if key != "mat_hypertable_id")
            row(
                "jobs" if index == 0 else "",
                f"#{job.job_id} {job.kind} {job.relation} every {job.schedule_interval}"
                f"{'' if job.scheduled else ' (paused)'}"
                f"{f' ({settings_text})' if settings_text else ''}"
                f"; last run: {job.last_run_status or 'never'}",
            )
    if problems:
        for problem in problems:
            row("PROBLEM", problem)
    else:
        row("status", "ok")


class _Instant(click.ParamType):
    """An ISO-8601 datetime (UTC when naive) or date; converts to (instant, date_only)."""

    name = "datetime|date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from apm.domain.validation import parse_instant

        if isinstance(value, tuple):
            return value
        parsed = parse_instant(value)
        if parsed is None:
            self.fail(f"{value!r} is not an ISO-8601 datetime or date.", param, ctx)
        return parsed


@main.command()
@click.argument("granularity", type=click.Choice(["hourly", "daily"]))
@click.option("--start", type=_Instant(), default=None,
              help="Window start, ISO datetime or date [default: --end minus 7 days].")
@click.option("--end", type=_Instant(), default=None,
              help="Window end, ISO datetime or date (a date includes that whole day) "
              "[default: now].")
def refresh(
    granularity: str,
    start: tuple[datetime, bool] | None,
    end: tuple[datetime, bool] | None,
) -> None:
    """Refresh the hourly or daily rollup over a window (default: the last 7 days).

    On TimescaleDB this rematerialises the continuous aggregate's whole buckets in the window
    (the open bucket stays real-time); the plain-PostgreSQL backend rebuilds its rollup
    rows from the raw events.
    """
    from apm.domain.validation import end_of_day
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    start_at = start[0] if start else None
    end_at = (end_of_day(end[0]) if end[1] else end[0]) if end else None
    if start_at is not None and start_at > (end_at or datetime.now(UTC)):
        raise click.BadParameter("must not be after --end (default: now).", param_hint="--start")
    with database(configured) as settings:
        message = asyncio.run(_refresh(settings, granularity, start_at, end_at))
    click.echo(message)


async def _refresh(
    settings: Settings, granularity: str, start: datetime | None, end: datetime | None
) -> str:
    storage = await _open_or_fail(settings)
    try:
        result = await storage.ports.analytics.refresh(
            granularity, start=start, end=end  # type: ignore[arg-type]
        )
        return result.message
    except StorageUnavailable as error:
        raise click.ClickException(f"Database unavailable: {error.reason}") from None
    finally:
        await storage.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
