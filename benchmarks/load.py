"""Concurrent ingest load against a running apm server on this machine, then a loss check.

    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 \
        --clients 50 --requests 20 --events 500

Each of --clients clients sends --requests ingest requests of --events events one after the
other (all clients at once). Every event carries a unique trace id and the run's own service
names, so afterwards the script asks the API how many events of this run are stored and
compares with what the server said it inserted: a difference is data loss (or duplication).
With --check-rollups it also compares the daily rollup and KPIs of the run's services with
that count.

Bounded: the request count is fixed, and the run stops sending after --max-seconds. Only
loopback addresses are accepted as a target (this is a load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

STATUSES = (200, 200, 200, 201, 204, 302, 400, 404, 500, 503)
ENDPOINTS = ("/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/cart", "/login", "/search")


def loopback_only(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing to send load to {host!r}: only loopback targets are allowed")
    return url.rstrip("/")


def build_payload(run: str, client: int, request: int, events: int, now: datetime) -> bytes:
    batch: list[dict[str, Any]] = []
    for index in range(events):
        n = hash((client, request, index)) & 0xFFFFFFF
        batch.append(
            {
                "time": (now - timedelta(seconds=n % 86_400)).isoformat(),
                "service": f"{run}-{n % 4}",
                "endpoint": ENDPOINTS[n % len(ENDPOINTS)],
                "method": ("GET", "POST", "PUT", "DELETE")[n % 4],
                "status_code": STATUSES[n % len(STATUSES)],
                "latency_ms": n % 3000,
                "trace_id": f"{run}-{client}-{request}-{index}",
            }
        )
    return msgspec.json.encode(batch)


async def client_loop(
    http: httpx.AsyncClient, args: argparse.Namespace, run: str, client: int, deadline: float,
    latencies: list[float], statuses: Counter[int], inserted: list[int], now: datetime,
) -> None:
    for request in range(args.requests):
        if time.monotonic() > deadline:
            return
        body = build_payload(run, client, request, args.events, now)
        started = time.perf_counter()
        try:
            response = await http.post(
                "/api/requests/ingest/", content=body,
                headers={"content-type": "application/json", **args.write_auth},
            )
        except httpx.HTTPError as error:
            statuses[-1] += 1
            print(f"client {client}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] += 1
        if response.status_code == 200:
            inserted.append(response.json()["inserted"])


async def stored_count(http: httpx.AsyncClient, run: str, auth: dict[str, str]) -> int:
    total = 0
    for shard in range(4):
        response = await http.get(
            "/api/requests/", params={"service": f"{run}-{shard}", "page_size": 1}, headers=auth
        )
        response.raise_for_status()
        total += response.json()["count"]
    return total


async def rollup_counts(
    http: httpx.AsyncClient, run: str, auth: dict[str, str], now: datetime
) -> tuple[int, int]:
    window = {"start": (now - timedelta(days=2)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat()}
    daily = kpis = 0
    for shard in range(4):
        service = {"service": f"{run}-{shard}"}
        rows = await http.get("/api/requests/daily/", params={**window, **service, "limit": 5000},
                              headers=auth)
        rows.raise_for_status()
        daily += sum(row["hits"] for row in rows.json())
        summary = await http.get("/api/requests/kpis/", params={**window, **service}, headers=auth)
        summary.raise_for_status()
        kpis += summary.json()["hits"]
    return daily, kpis


async def main(args: argparse.Namespace) -> int:
    base = loopback_only(args.url)
    run = f"load-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    inserted: list[int] = []
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits) as http:
        started = time.perf_counter()
        deadline = time.monotonic() + args.max_seconds
        await asyncio.gather(
            *(
                client_loop(http, args, run, client, deadline, latencies, statuses, inserted, now)
                for client in range(args.clients)
            )
        )
        elapsed = time.perf_counter() - started
        accepted = sum(inserted)
        stored = await stored_count(http, run, args.read_auth)
        rollups = None
        if args.check_rollups:
            rollups = await rollup_counts(http, run, args.read_auth, now)

    ordered = sorted(latencies) or [0.0]
    print(f"run {run}: {len(latencies)} requests in {elapsed:.1f} s from {args.clients} clients")
    print(f"  statuses: {dict(sorted(statuses.items()))}  (-1 = transport error)")
    print(f"  events accepted {accepted}, stored {stored}: {accepted / elapsed:,.0f} events/s")
    print(
        "  request latency s: "
        f"p50 {statistics.median(ordered):.3f}  "
        f"p95 {ordered[int(len(ordered) * 0.95) - 1 if len(ordered) > 1 else 0]:.3f}  "
        f"max {ordered[-1]:.3f}"
    )
    failed = stored != accepted or any(code != 200 for code in statuses)
    if rollups is not None:
        print(f"  daily rollup hits {rollups[0]}, KPI hits {rollups[1]}")
        failed = failed or rollups != (stored, stored)
    print("LOSS OR ERRORS" if failed else "OK: nothing lost")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="loopback base URL")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--events", type=int, default=500, help="events per request")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="stop sending after this long")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout (s)")
    parser.add_argument("--ingest-key", default=None, help="sent as a Bearer token on ingest")
    parser.add_argument("--read-key", default=None, help="sent as a Bearer token on reads")
    parser.add_argument("--check-rollups", action="store_true",
                        help="also compare daily rollup and KPI hits with the stored count")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "events"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")
    args.write_auth = {"Authorization": f"Bearer {args.ingest_key}"} if args.ingest_key else {}
    args.read_auth = {"Authorization": f"Bearer {args.read_key}"} if args.read_key else {}
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
