"""Bulk ingest throughput: the database's own limit against the whole service, in one run.

    python benchmarks/ingest.py                        # embedded PostgreSQL in a temp dir
    python benchmarks/ingest.py --database-url postgresql://user:pass@host/db --rounds 5

(a) raw binary COPY of pre-built rows straight into api_requests (asyncpg
    copy_records_to_table, one transaction per batch): what this schema can absorb here;
(b) POST /api/requests/ingest/ to an `apm serve` process started by this script on a free
    port against the same database, from N concurrent keep-alive senders, 1000 and 5000
    events per request. On plain PostgreSQL that includes the rollup-table upkeep which the
    service does inside every ingest transaction.
(c) the same requests to the same app in a server process whose ingest has no rollup hook
    (`--ingest-only` off by default): HTTP, decoding, validation and the COPY alone, which
    tells the ingest path's cost apart from the rollup upkeep's.

Both sides write the same events at the same concurrency and batch size; tables are emptied
before every measurement, and (a) and (b) alternate within every round so that load from other
work on the machine hits both alike. Prints events/s, (b)/(a), request p50/p95 and the
server's peak RSS (the kernel's high-water mark for that process). The server is stopped by
its PID, also on failure. Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import psutil

HOST = "127.0.0.1"
COLUMNS = (
    "time",
    "service",
    "endpoint",
    "method",
    "status_code",
    "latency_ms",
    "trace_id",
    "user_ref",
    "tags",
)
METHODS = ("GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE")
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    service: str
    path: str
    method: str
    latency_mu: float


def endpoints(rng: random.Random) -> list[Endpoint]:
    """20 services x 50 endpoints, each with its own method and typical latency."""
    found = []
    for s in range(20):
        for e in range(50):
            found.append(
                Endpoint(
                    service=f"service-{s:02d}",
                    path=f"/api/v{1 + e % 3}/resource-{e:02d}" + ("/{id}" if e % 4 == 0 else ""),
                    method=rng.choice(METHODS),
                    latency_mu=math.log(rng.uniform(5, 200)),
                )
            )
    return found


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    table = endpoints(rng)
    weights = [1 / (i + 1) ** 0.8 for i in range(len(table))]  # a few hot endpoints
    now = datetime.now(UTC).replace(microsecond=0)
    events = []
    for endpoint in rng.choices(table, weights, k=count):
        roll = rng.random()
        if roll < 0.03:
            status, slow = rng.choice((500, 502, 503, 504)), 3.0
        elif roll < 0.10:
            status, slow = rng.choice((400, 401, 403, 404, 404, 409, 422, 429)), 0.5
        else:
            status, slow = {"POST": 201, "DELETE": 204}.get(endpoint.method, 200), 1.0
        # Mostly the endpoint's own method; a few clients send HEAD/OPTIONS.
        method = endpoint.method if rng.random() < 0.97 else rng.choice(("HEAD", "OPTIONS"))
        tags: dict[str, Any] = {"env": "prod", "region": rng.choice(REGIONS)}
        if rng.random() < 0.3:
            tags["version"] = f"2.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
        moment = now - timedelta(seconds=rng.uniform(0, 86_400))
        events.append(
            {
                "time": moment.isoformat().replace("+00:00", "Z"),
                "service": endpoint.service,
                "endpoint": endpoint.path,
                "method": method,
                "status_code": status,
                "latency_ms": max(0, int(rng.lognormvariate(endpoint.latency_mu, 0.6) * slow)),
                "trace_id": f"{rng.getrandbits(128):032x}" if rng.random() < 0.8 else None,
                "user_ref": f"user-{rng.randint(1, 50_000)}" if rng.random() < 0.6 else None,
                "tags": tags,
            }
        )
    return events


def as_row(event: dict[str, Any]) -> tuple[Any, ...]:
    """What the service would write for this event: the raw COPY side of the comparison."""
    return (
        datetime.fromisoformat(event["time"]),
        event["service"],
        event["endpoint"],
        event["method"],
        event["status_code"],
        event["latency_ms"],
        event["trace_id"],
        event["user_ref"],
        msgspec.json.encode(event["tags"]).decode(),
    )


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- database -------------------------------------------------------------------------------


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given URL, or an embedded PostgreSQL in a temporary directory."""
    if url:
        from apm.settings import normalize_database_url

        yield normalize_database_url(url)
        return
    from apm.adapters.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="apm-bench-ingest-") as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        try:
            yield server.url
        finally:
            server.close()


async def empty_tables(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        # Top-level tables only: a partitioned table empties its partitions itself.
        tables = await connection.fetchval(
            "SELECT string_agg(format('%I', relname), ', ') FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') "
            "AND NOT relispartition AND relname <> 'alembic_version'"
        )
        for attempt in range(10):
            try:
                await connection.execute(f"TRUNCATE {tables}")
                break
            except asyncpg.DeadlockDetectedError:
                # A server still compacting the last measurement's rollup deltas.
                if attempt == 9:
                    raise
                await asyncio.sleep(0.5)
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def count_events(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM api_requests"))
    finally:
        await connection.close()


async def raw_copy(dsn: str, rows: list[tuple[Any, ...]], batch: int, senders: int) -> float:
    """Events/s of binary COPY, `senders` connections, one transaction per batch."""
    queue = chunks(rows, batch)
    connections = [await asyncpg.connect(dsn) for _ in range(senders)]

    async def sender(connection: asyncpg.Connection) -> None:
        while queue:
            part = queue.pop()
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "api_requests", records=part, columns=COLUMNS
                )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender(c) for c in connections))
        return len(rows) / (time.perf_counter() - started)
    finally:
        for connection in connections:
            await connection.close()


# --- the service ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def serve_ingest_only(port: int) -> None:
    """`apm serve`, except that ingest runs without the rollup hook.

    The composition root is wrapped before the server starts; its worker processes are forked
    from this one (Granian; Uvicorn serves a single worker in-process), so they build the app
    through the wrapper.
    """
    import dataclasses

    import apm.app
    from apm.adapters.engine import build_sessionmaker
    from apm.adapters.postgres.ingest import PostgresIngest
    from apm.cli import main as apm_main

    open_storage = apm.app.open_storage

    async def without_rollup_upkeep(settings: Any) -> Any:
        storage = await open_storage(settings)
        ingest = PostgresIngest(build_sessionmaker(storage.engine), write=settings.ingest_write)
        storage.ports = dataclasses.replace(storage.ports, ingest=ingest)
        return storage

    apm.app.open_storage = without_rollup_upkeep  # type: ignore[assignment]
    apm_main(["serve", "--host", HOST, "--port", str(port), "--no-migrate"])


@contextmanager
def serving(
    url: str, log: Path, extra_env: dict[str, str], *, ingest_only: bool = False
) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "APM_DATABASE_URL": url,
        "APM_LOG_FORMAT": "json",
        "APM_INGEST_KEYS": "",
        "APM_READ_KEYS": "",
        **extra_env,
    }
    command = [
        sys.executable,
        "-m",
        "apm.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-migrate",
    ]
    if ingest_only:
        command = [sys.executable, __file__, "--serve-ingest-only", str(port)]
    with open(log, "ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"apm serve exited with {process.returncode}; see {log}")
            try:
                httpx.get(f"http://{HOST}:{port}/api/health/", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"apm serve did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield f"http://{HOST}:{port}", process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def server_processes(pid: int) -> list[psutil.Process]:
    """The server and its worker processes (Granian runs a supervisor and forked workers)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def peak_rss_mb(pid: int) -> float:
    """The largest high-water mark of resident memory (VmHWM) among the server's processes,
    in MiB: the peak of the worker that served the requests."""
    peaks = []
    for process in server_processes(pid):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


@dataclass
class HttpResult:
    events_per_s: float
    p50_ms: float
    p95_ms: float
    server_cpu_us: float
    """CPU time (user + system) the server process spent per event: unlike the rates, this
    hardly moves when other work competes for the machine."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server and its workers."""
    total = 0.0
    for process in server_processes(pid):
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def http_ingest(
    base: str, pid: int, bodies: list[bytes], per_request: int, senders: int
) -> HttpResult:
    queue = list(reversed(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def sender() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                response = await client.post(
                    "/api/requests/ingest/",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                latencies.append(time.perf_counter() - started)
                answer = response.json()
                if response.status_code != 200 or answer.get("inserted") != per_request:
                    raise RuntimeError(f"ingest answered {response.status_code}: {answer}")

        # Open the keep-alive connections before the clock starts.
        await asyncio.gather(*(client.get("/api/health/") for _ in range(senders)))
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    latencies.sort()
    return HttpResult(
        events_per_s=per_request * len(bodies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p95_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000,
        server_cpu_us=cpu / (per_request * len(bodies)) * 1e6,
    )


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="default: an embedded PostgreSQL in a temp dir")
    parser.add_argument("--events", type=int, default=100_000, help="per measurement [100000]")
    parser.add_argument("--batches", default="1000,5000", help="events per request [1000,5000]")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders [4]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) and (b) [3]")
    parser.add_argument(
        "--write",
        choices=("auto", "copy", "unnest"),
        default="auto",
        help="APM_INGEST_WRITE of the server [auto]",
    )
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="also measure (c): the same app with ingest's rollup hook left out",
    )
    parser.add_argument("--serve-ingest-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ingest_only:
        serve_ingest_only(args.serve_ingest_only)
        return 0
    # A plain exit on SIGTERM, so that the servers and the embedded database are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    batches = [int(part) for part in args.batches.split(",")]

    print(f"generating {args.events} events ...", flush=True)
    events = make_events(args.events, seed=7)
    rows = [as_row(event) for event in events]
    bodies = {
        size: [msgspec.json.encode(part) for part in chunks(events, size)] for size in batches
    }
    print(
        f"{len(events)} events; request body "
        + ", ".join(f"{size} events: {len(bodies[size][0]) / 1024:.0f} KiB" for size in batches),
        flush=True,
    )

    kinds = ["b", "c"] if args.ingest_only else ["b"]
    copy_rates: dict[int, list[float]] = {}
    http: dict[tuple[str, int], list[HttpResult]] = {}
    with (
        database(args.database_url) as url,
        tempfile.TemporaryDirectory() as tmp,
        ExitStack() as stack,
    ):
        from apm.adapters.migrations import upgrade

        upgrade(url)
        dsn = plain_dsn(url)
        env = {"APM_INGEST_WRITE": args.write}
        servers = {
            kind: stack.enter_context(
                serving(url, Path(tmp) / f"server-{kind}.log", env, ingest_only=kind == "c")
            )
            for kind in kinds
        }
        for round_number in range(1, args.rounds + 1):
            for size in batches:
                asyncio.run(empty_tables(dsn))
                copy_rate = asyncio.run(raw_copy(dsn, rows, size, args.senders))
                assert asyncio.run(count_events(dsn)) == len(rows)
                copy_rates.setdefault(size, []).append(copy_rate)
                line = f"round {round_number}  batch {size:5}  (a) COPY {copy_rate:7.0f} ev/s"
                for kind, (base, pid) in servers.items():
                    asyncio.run(empty_tables(dsn))
                    result = asyncio.run(http_ingest(base, pid, bodies[size], size, args.senders))
                    assert asyncio.run(count_events(dsn)) == len(rows)
                    http.setdefault((kind, size), []).append(result)
                    line += (
                        f"  ({kind}) {result.events_per_s:7.0f} ev/s"
                        f" = {result.events_per_s / copy_rate:4.2f}"
                        f" p50/p95 {result.p50_ms:6.1f}/{result.p95_ms:6.1f} ms"
                        f" cpu {result.server_cpu_us:4.1f} us/ev"
                        f" RSS {peak_rss_mb(pid):5.1f} MiB"
                    )
                print(line, flush=True)
        peaks = {kind: peak_rss_mb(pid) for kind, (_, pid) in servers.items()}

    names = {"b": "(b) apm serve", "c": "(c) ingest path only"}
    print()
    print(
        f"median of {args.rounds} rounds; {args.events} events per measurement; "
        f"{args.senders} concurrent senders and COPY connections; "
        f"APM_INGEST_WRITE={args.write}; {psutil.cpu_count()} CPUs"
    )
    print()
    print(
        "| events/request | (a) raw COPY ev/s | server | ev/s | / (a), same round "
        "| p50 ms | p95 ms | server CPU us/event |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in batches:
        copy_rate = statistics.median(copy_rates[size])
        for kind in kinds:
            runs = http[(kind, size)]
            ratio = statistics.median(
                r.events_per_s / c for r, c in zip(runs, copy_rates[size], strict=True)
            )
            print(
                f"| {size} | {copy_rate:.0f} | {names[kind]} "
                f"| {statistics.median(r.events_per_s for r in runs):.0f} | {ratio:.2f} "
                f"| {statistics.median(r.p50_ms for r in runs):.1f} "
                f"| {statistics.median(r.p95_ms for r in runs):.1f} "
                f"| {statistics.median(r.server_cpu_us for r in runs):.1f} |"
            )
    print()
    for kind in kinds:
        print(f"{names[kind]}: server peak RSS {peaks[kind]:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
