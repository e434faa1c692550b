"""What `apm check` reports: server, extension, migration state and the analytics objects.

Read-only catalogue queries; every statement is below with what it reads and its row shape.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apm.adapters.errors import translating
from apm.adapters.migrations import alembic_config

EVENTS_TABLE = "api_requests"
TIMESCALE_ROLLUPS = ("api_requests_hourly", "api_requests_daily")
# The plain rollup tables (migration 0003) and the view of the daily figures (0005).
PLAIN_ROLLUPS = (
    "api_requests_hourly_rollup", "api_requests_daily_rollup", "api_requests_daily_rollup_all"
)

# Reads the server; one row (version text): e.g. "17.2".
SERVER_VERSION = text("SHOW server_version")

# Reads pg_extension and pg_available_extensions; one row (installed text|null,
# available text|null): TimescaleDB installed in this database, and offered by the server.
TIMESCALE_VERSIONS = text(
    """
    SELECT
        (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS installed,
        (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb')
            AS available
    """
)

# Reads alembic_version when it exists; zero or more rows (version_num text).
MIGRATION_REVISIONS = text("SELECT version_num FROM alembic_version ORDER BY version_num")

# Reads pg_class; one row per name of :names that exists in the search path
# (name text, kind text: 'table', 'view', 'materialized view', 'partitioned table').
RELATIONS = text(
    """
    SELECT c.relname AS name,
           CASE c.relkind
               WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
               WHEN 'p' THEN 'partitioned table' ELSE c.relkind::text
           END AS kind
    FROM pg_class c
    WHERE c.relname = ANY(CAST(:names AS text[]))
      AND pg_table_is_visible(c.oid)
    ORDER BY c.relname
    """
)

# Reads timescaledb_information.hypertables; zero or one row (hypertable_name text,
# num_chunks bigint) for the events table.
HYPERTABLE = text(
    """
    SELECT hypertable_name, num_chunks
    FROM timescaledb_information.hypertables
    WHERE hypertable_name = :name
    """
)

# Reads timescaledb_information.continuous_aggregates; one row per continuous aggregate
# (view_name text, materialized_only bool).
CONTINUOUS_AGGREGATES = text(
    """
    SELECT view_name, materialized_only
    FROM timescaledb_information.continuous_aggregates
    ORDER BY view_name
    """
)

# Reads timescaledb_information.jobs and job_stats; one row per background job on a
# hypertable or continuous aggregate (job_id int, proc_name text, relation text,
# schedule_interval interval, scheduled bool, config jsonb, last_run_status text|null,
# next_start timestamptz|null). A continuous aggregate's job names its materialization
# hypertable, so the view name comes from continuous_aggregates.
JOBS = text(
    """
    SELECT j.job_id,
           j.proc_name,
           COALESCE(ca.view_name, j.hypertable_name) AS relation,
           j.schedule_interval,
           j.scheduled,
           j.config,
           s.last_run_status,
           s.next_start
    FROM timescaledb_information.jobs j
    LEFT JOIN timescaledb_information.continuous_aggregates ca
        ON ca.materialization_hypertable_name = j.hypertable_name
    LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
    WHERE j.hypertable_name IS NOT NULL
    ORDER BY j.job_id
    """
)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    kind: str
    relation: str
    schedule_interval: str
    scheduled: bool
    config: dict[str, Any]
    last_run_status: str | None


class ContinuousAggregate(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    realtime: bool


class DatabaseReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `apm check` prints; `problems` lists what needs fixing (empty when healthy)."""

    database: str
    server_version: str
    timescaledb_installed: str | None
    timescaledb_available: str | None
    revision: str | None
    head: str
    relations: dict[str, str]
    hypertable: bool
    continuous_aggregates: list[ContinuousAggregate]
    jobs: list[Job]

    @property
    def migrations_current(self) -> bool:
        return self.revision == self.head

    def problems(self, backend: str) -> list[str]:
        found: list[str] = []
        if self.revision is None:
            found.append("No migration has been applied: run `apm migrate`.")
        elif not self.migrations_current:
            found.append(
                f"Migrations are behind (at {self.revision}, latest is {self.head}): "
                "run `apm migrate`."
            )
        if self.revision is not None and EVENTS_TABLE not in self.relations:
            found.append(f"Table {EVENTS_TABLE} is missing.")
        if backend == "timescale" and self.migrations_current:
            if not self.hypertable:
                found.append(f"{EVENTS_TABLE} is not a hypertable.")
            caggs = {cagg.name for cagg in self.continuous_aggregates}
            for name in TIMESCALE_ROLLUPS:
                if name not in caggs:
                    found.append(f"Continuous aggregate {name} is missing.")
                elif not any(
                    job.relation == name and job.kind == "refresh" for job in self.jobs
                ):
                    found.append(f"Continuous aggregate {name} has no refresh policy.")
        # The plain rollup relations come with migrations 0003 and 0005.
        if backend == "postgres" and self.migrations_current and _revision_known("0003"):
            for name in PLAIN_ROLLUPS:
                if name not in self.relations:
                    found.append(f"Rollup relation {name} is missing.")
        return found


def _revision_known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:
        return False


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def head_revision() -> str:
    """The latest migration shipped with this installation."""
    heads = _scripts().get_heads()
    return ",".join(sorted(heads))


def safe_url(url: str) -> str:
    """The database URL without its password, for printing."""
    parsed: URL = make_url(url)
    return parsed.render_as_string(hide_password=True)


def _interval(value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return str(value)


_JOB_KINDS = {
    "policy_refresh_continuous_aggregate": "refresh",
    "policy_retention": "retention",
    "policy_compression": "compression",
    "policy_columnstore": "compression",
    "policy_reorder": "reorder",
}


async def _relations(connection: AsyncConnection) -> dict[str, str]:
    names = [EVENTS_TABLE, "alembic_version", *TIMESCALE_ROLLUPS, *PLAIN_ROLLUPS]
    rows = await connection.execute(RELATIONS, {"names": names})
    return {row.name: row.kind for row in rows}


async def _timescale_objects(
    connection: AsyncConnection,
) -> tuple[bool, list[ContinuousAggregate], list[Job]]:
    hypertable = (await connection.execute(HYPERTABLE, {"name": EVENTS_TABLE})).first()
    caggs = [
        ContinuousAggregate(name=row.view_name, realtime=not row.materialized_only)
        for row in await connection.execute(CONTINUOUS_AGGREGATES)
    ]
    jobs = [
        Job(
            job_id=row.job_id,
            kind=_JOB_KINDS.get(row.proc_name, row.proc_name),
            relation=row.relation,
            schedule_interval=_interval(row.schedule_interval),
            scheduled=bool(row.scheduled),
            config=dict(row.config or {}),
            last_run_status=row.last_run_status,
        )
        for row in await connection.execute(JOBS)
    ]
    return hypertable is not None, caggs, jobs


@translating
async def inspect_database(engine: AsyncEngine) -> DatabaseReport:
    """Read the report in one read-only connection; raises StorageUnavailable when unreachable."""
    async with engine.connect() as connection:
        version = (await connection.execute(SERVER_VERSION)).scalar_one()
        extension = (await connection.execute(TIMESCALE_VERSIONS)).one()
        relations = await _relations(connection)
        revisions: list[str] = []
        if "alembic_version" in relations:
            revisions = list((await connection.execute(MIGRATION_REVISIONS)).scalars())
        hypertable, caggs, jobs = False, [], []
        if extension.installed:
            hypertable, caggs, jobs = await _timescale_objects(connection)
    relations.pop("alembic_version", None)
    return DatabaseReport(
        database=safe_url(engine.url.render_as_string(hide_password=False)),
        server_version=str(version),
        timescaledb_installed=extension.installed,
        timescaledb_available=extension.available,
        revision=",".join(revisions) or None,
        head=head_revision(),
        relations=relations,
        hypertable=hypertable,
        continuous_aggregates=caggs,
        jobs=jobs,
    )
