"""Analytics latency: the service's answers (rollups + raw edges) against raw-only SQL.

    python benchmarks/analytics.py --n 1000000                  # embedded PostgreSQL, temp dir
    python benchmarks/analytics.py --n 10000000 --data-dir /tmp/apm-bench   # kept for re-runs
    python benchmarks/analytics.py --database-url postgresql://... --backend timescale
    python benchmarks/analytics.py --n 200000 --timescale-test-engine   # npm TimescaleDB engine

Loads N synthetic events (20 services x 50 endpoints over 30 days, ending at a fixed instant
that is not on an hour boundary, so every window has partial edges) with binary COPY, builds
the rollups with the backend's refresh, VACUUM ANALYZE, then times repeated calls of:
KPIs for 24 h / 7 d / 30 d, top endpoints without and with p95, hourly (24 h), daily (7 d)
and a filtered list page. Every scenario is also answered by one raw-only SQL statement that
computes the same figures from api_requests (the way a service without rollups would), and
both answers are checked to agree. Prints p50/p95 per scenario.

With --data-dir the database survives the run (one database per N): a re-run skips the load.
Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_engine, build_sessionmaker
from apm.adapters.migrations import upgrade
from apm.adapters.postgres.analytics import PostgresAnalytics, RollupAnalytics
from apm.adapters.postgres.records import PostgresRecords
from apm.domain.analytics import KpiQuery, RollupQuery, TopQuery
from apm.domain.listing import ListQuery

DATA_END = datetime(2025, 12, 31, 17, 37, 12, tzinfo=UTC)
DATA_SPAN = timedelta(days=30)
SERVICES = 20
ENDPOINTS_PER_SERVICE = 50
COPY_COLUMNS = ("time", "service", "endpoint", "method", "status_code", "latency_ms")

# Writes events from parallel arrays (when the server refuses COPY FROM STDIN); no rows.
INSERT_UNNEST = """
    INSERT INTO api_requests (time, service, endpoint, method, status_code, latency_ms)
    SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[],
                         $5::smallint[], $6::integer[])
"""

# --- the raw-only answers (what a service without rollups runs) ---------------------------

# Reads api_requests in [$1, $2); one row: the KPIs of the window.
RAW_KPIS = """
    SELECT count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,
           max(latency_ms) AS max_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
"""

# As RAW_KPIS without the p95 (what `with_p95=false` answers).
RAW_KPIS_NO_P95 = """
    SELECT count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms,
           max(latency_ms) AS max_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
"""

# Reads api_requests in [$1, $2); the 20 busiest (service, endpoint) with their figures.
RAW_TOP = """
    SELECT service, endpoint, count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms, max(latency_ms) AS max_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
    GROUP BY service, endpoint
    ORDER BY hits DESC, service COLLATE "C", endpoint COLLATE "C"
    LIMIT 20
"""

# As RAW_TOP, with the exact p95 of every endpoint.
RAW_TOP_P95 = """
    SELECT service, endpoint, count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms, max(latency_ms) AS max_latency_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
    GROUP BY service, endpoint
    ORDER BY hits DESC, service COLLATE "C", endpoint COLLATE "C"
    LIMIT 20
"""

# Reads api_requests in [$1, $2) (whole hours); 500 rows per (hour, service, endpoint).
RAW_HOURLY = """
    SELECT date_trunc('hour', time, 'UTC') AS bucket, service, endpoint, count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms, max(latency_ms) AS max_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
    GROUP BY 1, 2, 3
    ORDER BY 1 DESC, service COLLATE "C", endpoint COLLATE "C"
    LIMIT 500
"""

# Reads api_requests in [$1, $2) (whole days); 500 rows per (day, service, endpoint) with p95.
RAW_DAILY = """
    SELECT date_trunc('day', time, 'UTC') AS bucket, service, endpoint, count(*) AS hits,
           count(*) FILTER (WHERE status_code >= 500) AS errors,
           avg(latency_ms)::float8 AS avg_latency_ms, max(latency_ms) AS max_latency_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms
    FROM api_requests
    WHERE time >= $1 AND time < $2
    GROUP BY 1, 2, 3
    ORDER BY 1 DESC, service COLLATE "C", endpoint COLLATE "C"
    LIMIT 500
"""

# --- synthetic data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    service: str
    endpoint: str
    methods: tuple[str, ...]
    base_latency: int


def routes(rng: random.Random) -> list[Route]:
    """20 x 50 endpoints; most have one method, some two (GET and PUT on one path)."""
    found = []
    for s in range(SERVICES):
        for e in range(ENDPOINTS_PER_SERVICE):
            method = rng.choices(["GET", "POST", "PUT", "DELETE", "PATCH"], [60, 25, 8, 5, 2])[0]
            methods = ("GET", "PUT") if rng.random() < 0.2 else (method,)
            found.append(
                Route(f"service-{s:02d}", f"/api/v1/resource-{e:02d}/{{id}}", methods,
                      rng.choice([5, 10, 20, 40, 80, 160]))
            )
    return found


def event_rows(n: int, seed: int = 7) -> Iterator[list[tuple[Any, ...]]]:
    """N events in time order over DATA_SPAN, in chunks; popularity is Zipf-like."""
    rng = random.Random(seed)
    table = routes(rng)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(table))]
    rng.shuffle(weights)
    statuses = [200] * 88 + [201] * 4 + [204] * 2 + [301, 304] + [400, 404, 404, 429] + [500, 503]
    # A long-tailed latency multiplier (log-normal-ish), as a table to draw from.
    multipliers = [math.exp(rng.gauss(0, 0.7)) for _ in range(4096)]
    start = DATA_END - DATA_SPAN
    step = DATA_SPAN / n
    chunk = 100_000
    for offset in range(0, n, chunk):
        size = min(chunk, n - offset)
        picked = rng.choices(table, weights, k=size)
        codes = rng.choices(statuses, k=size)
        factors = rng.choices(multipliers, k=size)
        rows = []
        for i in range(size):
            route = picked[i]
            method = route.methods[i & 1] if len(route.methods) > 1 else route.methods[0]
            rows.append(
                (
                    start + step * (offset + i), route.service, route.endpoint, method,
                    codes[i], int(route.base_latency * factors[i]),
                )
            )
        yield rows


# --- the database --------------------------------------------------------------------------------


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    head, sep, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


@contextmanager
def server(url: str | None, data_dir: str | None, *, test_engine: bool = False) -> Iterator[str]:
    if test_engine:
        # The TimescaleDB engine of the test suite (npm, no Docker): one in-memory database.
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.tsengine import start_timescale_engine

        with start_timescale_engine() as engine:
            yield engine.url
        return
    if url is not None:
        from apm.settings import normalize_database_url

        yield normalize_database_url(url)
        return
    from apm.adapters.embedded import EmbeddedPostgres

    if data_dir is not None:
        embedded = EmbeddedPostgres(Path(data_dir))
        try:
            yield embedded.url
        finally:
            embedded.close()  # stops the server; the data stays for the next run
        return
    with tempfile.TemporaryDirectory(prefix="apm-bench-analytics-") as tmp:
        embedded = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        try:
            yield embedded.url
        finally:
            embedded.close()


async def ensure_database(server_url: str, name: str) -> str:
    connection = await asyncpg.connect(plain_dsn(server_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


async def load(url: str, n: int, backend: str, analytics: RollupAnalytics) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        count = await connection.fetchval("SELECT count(*) FROM api_requests")
        if count == n:
            print(f"reusing {n:,} events already loaded")
            return
        await connection.execute("TRUNCATE api_requests")
        started = time.perf_counter()
        how = "COPY"
        for rows in event_rows(n):
            if how == "COPY":
                try:
                    await connection.copy_records_to_table(
                        "api_requests", records=rows, columns=COPY_COLUMNS
                    )
                    continue
                except asyncpg.FeatureNotSupportedError:
                    # Some engines (the test TimescaleDB among them) refuse COPY FROM STDIN.
                    how = "INSERT ... unnest"
            await connection.execute(INSERT_UNNEST, *zip(*rows, strict=True))
        print(f"loaded {n:,} events by {how} in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        window = {"start": DATA_END - DATA_SPAN, "end": DATA_END + timedelta(hours=1)}
        for granularity in ("hourly", "daily"):
            result = await analytics.refresh(granularity, **window)  # type: ignore[arg-type]
            print(f"  {result.message}")
        print(f"built the rollups in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        await connection.execute("VACUUM ANALYZE")
        print(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
    finally:
        await connection.close()


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Timing:
    p50: float
    p95: float
    calls: int


async def measure(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[Timing, Any]:
    answer = await call()  # warm-up (plans, caches)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await call()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    p95 = seconds[min(len(seconds) - 1, math.ceil(0.95 * len(seconds)) - 1)]
    return Timing(statistics.median(seconds) * 1000, p95 * 1000, repeat), answer


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def agree(service: Any, raw: Any) -> bool:
    """The service's answer and the raw statement's rows carry the same figures."""
    figures = ("hits", "errors", "avg_latency_ms", "max_latency_ms")
    if hasattr(service, "results"):
        service = service.results
    if not isinstance(service, list):
        service = [service]
    if len(service) != len(raw):
        return False
    for mine, theirs in zip(service, raw, strict=True):
        columns = set(theirs.keys())
        names = figures + (("p95_latency_ms",) if "p95_latency_ms" in columns else ())
        for name in names:
            ours = getattr(mine, name)
            if name in ("hits", "errors", "max_latency_ms"):
                if ours != theirs[name]:
                    return False
            elif not close(ours, theirs[name]):
                return False
        for key in ("service", "endpoint", "bucket"):
            if key in columns and getattr(mine, key) != theirs[key]:
                return False
    return True


async def run(args: argparse.Namespace) -> None:
    if args.timescale_test_engine:
        args.backend = "timescale"
    with server(args.database_url, args.data_dir,
                test_engine=args.timescale_test_engine) as server_url:
        url = server_url
        if args.database_url is None and not args.timescale_test_engine:
            url = await ensure_database(server_url, f"apm_bench_{args.n}")
        await asyncio.to_thread(upgrade, url)
        engine: AsyncEngine = build_engine(url, pool_size=2, statement_timeout_ms=0)
        try:
            await bench(engine, url, args)
        finally:
            await engine.dispose()


async def bench(engine: AsyncEngine, url: str, args: argparse.Namespace) -> None:
    sessions = build_sessionmaker(engine)
    if args.backend == "timescale":
        from apm.adapters.timescale.analytics import TimescaleAnalytics
        from apm.adapters.timescale.refresher import AggregateRefresher

        analytics: RollupAnalytics = TimescaleAnalytics(
            sessions, refresher=AggregateRefresher(engine)
        )
    else:
        analytics = PostgresAnalytics(sessions)
    records = PostgresRecords(sessions)
    await load(url, args.n, args.backend, analytics)

    raw = await asyncpg.connect(plain_dsn(url))
    end = DATA_END
    hour_floor = lambda t: t.replace(minute=0, second=0, microsecond=0)  # noqa: E731
    day_floor = lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0)  # noqa: E731
    Call = Callable[[], Awaitable[Any]]
    scenarios: list[tuple[str, Call, Call | None]] = []
    spans = (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7)),
             ("30 d", timedelta(days=30)))
    windowed: list[tuple[str, Callable[[datetime], Awaitable[Any]], str]] = [
        ("KPIs {}", lambda s: analytics.kpis(KpiQuery(start=s, end=end)), RAW_KPIS),
        ("KPIs {}, without p95",
         lambda s: analytics.kpis(KpiQuery(start=s, end=end, with_p95=False)), RAW_KPIS_NO_P95),
        ("top endpoints {}", lambda s: analytics.top_endpoints(TopQuery(start=s, end=end)),
         RAW_TOP),
        ("top endpoints {}, with p95",
         lambda s: analytics.top_endpoints(TopQuery(start=s, end=end, with_p95=True)),
         RAW_TOP_P95),
    ]
    for name, call, statement in windowed:
        for label, span in spans:
            start = end - span
            scenarios.append((
                name.format(label),
                lambda c=call, s=start: c(s),  # type: ignore[misc]
                lambda q=statement, s=start: raw.fetch(q, s, end),  # type: ignore[misc]
            ))
    hourly_start = end - timedelta(hours=24)
    scenarios.append((
        "hourly 24 h (500 rows)",
        lambda: analytics.hourly(RollupQuery(start=hourly_start, end=end)),
        lambda: raw.fetch(
            RAW_HOURLY, hour_floor(hourly_start), hour_floor(end) + timedelta(hours=1)
        ),
    ))
    daily_start = end - timedelta(days=7)
    scenarios.append((
        "daily 7 d (500 rows, p95)",
        lambda: analytics.daily(RollupQuery(start=daily_start, end=end)),
        lambda: raw.fetch(RAW_DAILY, day_floor(daily_start), day_floor(end) + timedelta(days=1)),
    ))
    scenarios.append((
        "list page (service filter, 50)",
        lambda: records.list(ListQuery(service="service-07", page_size=50)),
        None,
    ))

    print(f"\n{args.backend}, {args.n:,} events; {args.repeat} calls per scenario "
          f"({args.raw_repeat} for the raw path); milliseconds")
    header = (
        f"{'scenario':34} {'p50':>9} {'p95':>9} {'raw p50':>10} {'raw p95':>10}"
        f" {'speed-up':>9}  same"
    )
    print(header)
    print("-" * len(header))
    try:
        for name, service_call, raw_call in scenarios:
            if args.only and not any(part in name for part in args.only):
                continue
            timing, answer = await measure(service_call, args.repeat)
            line = f"{name:34} {timing.p50:9.1f} {timing.p95:9.1f}"
            if raw_call is not None and args.raw_repeat:
                raw_timing, rows = await measure(raw_call, args.raw_repeat)
                line += (
                    f" {raw_timing.p50:10.1f} {raw_timing.p95:10.1f}"
                    f" {raw_timing.p50 / timing.p50:8.1f}x"
                    f"  {'yes' if agree(answer, rows) else 'NO'}"
                )
            print(line, flush=True)
    finally:
        await raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events to load")
    parser.add_argument("--database-url", default=None,
                        help="a server to use (default: an embedded PostgreSQL)")
    parser.add_argument("--backend", choices=("postgres", "timescale"), default="postgres")
    parser.add_argument("--data-dir", default=None,
                        help="keep the embedded server's data here for re-runs")
    parser.add_argument("--timescale-test-engine", action="store_true",
                        help="run against the test suite's TimescaleDB engine (npm, no Docker); "
                             "implies --backend timescale")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the scenarios whose name holds this text (repeatable)")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per scenario")
    parser.add_argument("--raw-repeat", type=int, default=5,
                        help="timed calls of each raw-only statement (0 skips them)")
    args = parser.parse_args()
    if args.backend == "timescale" and args.database_url is None:
        sys.exit("--backend timescale needs --database-url of a TimescaleDB server")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
