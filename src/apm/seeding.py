"""Realistic synthetic request events, for `apm seed`, demos and benchmarks.

Pure: no I/O, no clock (the caller passes `now`), no global random state (the caller passes
a seed), so the same arguments always give the same events.

The traffic shape: every service has a fixed set of endpoints, each with its own method,
popularity (a Zipf-like weight) and typical latency. Latencies are log-normal around that
typical value; about 3% of events are 5xx (slower: timeouts and retries), about 7% are 4xx and
a few GETs are 304. Times follow a day/night cycle (UTC) over the last `days` days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from apm.domain.ingest import EventBatch

SERVICE_NAMES = (
    "checkout", "billing", "auth", "search", "catalog", "orders", "payments", "inventory",
    "users", "notifications", "shipping", "reviews", "recommendations", "media", "gateway",
)
RESOURCES = (
    "orders", "invoices", "users", "sessions", "products", "carts", "payments", "items",
    "refunds", "addresses", "tokens", "reports", "webhooks", "files", "events", "coupons",
)
# (method, path suffix, share of traffic, typical latency factor)
SHAPES = (
    ("GET", "", 1.0, 1.0),
    ("GET", "/{id}", 0.8, 0.6),
    ("POST", "", 0.35, 1.8),
    ("PATCH", "/{id}", 0.12, 1.5),
    ("PUT", "/{id}", 0.08, 1.6),
    ("DELETE", "/{id}", 0.05, 1.2),
    ("GET", "/{id}/history", 0.15, 2.5),
    ("OPTIONS", "", 0.02, 0.1),
    ("HEAD", "/{id}", 0.02, 0.3),
)
ERROR_5XX = (500, 500, 502, 503, 503, 504)
ERROR_4XX = (400, 400, 401, 403, 404, 404, 404, 409, 422, 429)
SUCCESS = {"POST": 201, "DELETE": 204}
TAG_SETS = tuple(
    msgspec.json.encode(tags).decode()
    for tags in (
        {"env": "prod", "region": "eu-west-1"},
        {"env": "prod", "region": "us-east-1"},
        {"env": "prod", "region": "us-east-1", "canary": True},
        {"env": "staging", "region": "eu-west-1"},
        {"env": "prod", "region": "ap-south-1", "version": "2.4.1"},
        {},
    )
)
TAG_WEIGHTS = (40, 35, 3, 10, 10, 2)
SHARE_5XX = 0.03
SHARE_4XX = 0.07
SHARE_304 = 0.02
USER_COUNT = 5000


@dataclass(frozen=True)
class Endpoint:
    service: str
    endpoint: str
    method: str
    weight: float
    median_ms: float


def service_names(count: int) -> list[str]:
    """`count` distinct service names; past the built-in list they get a numeric suffix."""
    return [
        SERVICE_NAMES[i % len(SERVICE_NAMES)]
        + ("" if i < len(SERVICE_NAMES) else f"-{i // len(SERVICE_NAMES) + 1}")
        for i in range(count)
    ]


def build_endpoints(
    rng: random.Random, *, services: int, endpoints_per_service: int
) -> list[Endpoint]:
    """The endpoint catalogue: distinct (service, endpoint, method) triples with weights.

    Each service gets a few resources; the common operations of every resource (list, read,
    create) come before the rarer ones, as in a real API.
    """
    most = len(RESOURCES) * len(SHAPES)
    if endpoints_per_service > most:
        raise ValueError(f"At most {most} endpoints per service, got {endpoints_per_service}.")
    found: list[Endpoint] = []
    for service_rank, service in enumerate(service_names(services), start=1):
        base_ms = rng.uniform(8, 60)
        resources = rng.sample(RESOURCES, min(len(RESOURCES), -(-endpoints_per_service // 3)))
        picked = [(resource, shape) for shape in SHAPES for resource in resources]
        for rank, (resource, (method, suffix, share, factor)) in enumerate(
            picked[:endpoints_per_service], start=1
        ):
            found.append(
                Endpoint(
                    service=service,
                    endpoint=f"/api/v1/{resource}{suffix}",
                    method=method,
                    # Zipf-like: a few services and endpoints carry most of the traffic.
                    weight=share / (rank**0.7) / (service_rank**0.5),
                    median_ms=base_ms * factor * rng.uniform(0.5, 2.0),
                )
            )
    return found


def _diurnal_weight(moment: datetime) -> float:
    """Traffic by hour of day: low at night (UTC 03:00), high in the afternoon."""
    hour = moment.hour + moment.minute / 60
    return 0.55 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi)


def _status(rng: random.Random, method: str) -> int:
    roll = rng.random()
    if roll < SHARE_5XX:
        return rng.choice(ERROR_5XX)
    if roll < SHARE_5XX + SHARE_4XX:
        return rng.choice(ERROR_4XX)
    if method == "GET" and roll < SHARE_5XX + SHARE_4XX + SHARE_304:
        return 304
    return SUCCESS.get(method, 200)


def _latency(rng: random.Random, median_ms: float, status: int) -> int:
    value = rng.lognormvariate(math.log(median_ms), 0.6)
    if status >= 500:
        # Failing calls are often timeouts or retries: a much heavier tail.
        value *= rng.uniform(2, 20)
    elif 400 <= status < 500:
        # Rejected early, before the expensive work.
        value *= 0.4
    return min(int(value), 120_000)


def generate(
    *,
    count: int,
    days: float,
    now: datetime,
    seed: int = 0,
    services: int = 5,
    endpoints_per_service: int = 8,
    chunk_size: int = 1000,
) -> Iterator[EventBatch]:
    """`count` events with times in `[now - days, now)`, in chunks of `chunk_size`.

    Events are in time order within a chunk but not across chunks (as real ingest sees them).
    """
    if count < 0 or days <= 0 or services < 1 or endpoints_per_service < 1 or chunk_size < 1:
        raise ValueError("count >= 0, days > 0, services >= 1, endpoints >= 1, chunk_size >= 1")
    rng = random.Random(seed)
    catalogue = build_endpoints(rng, services=services, endpoints_per_service=endpoints_per_service)
    weights = [item.weight for item in catalogue]
    span = timedelta(days=days).total_seconds()
    start = now.astimezone(UTC) - timedelta(seconds=span)
    remaining = count
    while remaining > 0:
        size = min(chunk_size, remaining)
        remaining -= size
        batch = EventBatch()
        times: list[datetime] = []
        while len(times) < size:
            moment = start + timedelta(seconds=rng.random() * span)
            if rng.random() < _diurnal_weight(moment):
                times.append(moment)
        times.sort()
        picks = rng.choices(catalogue, weights=weights, k=size)
        tags = rng.choices(TAG_SETS, weights=TAG_WEIGHTS, k=size)
        for moment, item, tag_text in zip(times, picks, tags, strict=True):
            status = _status(rng, item.method)
            batch.time.append(moment)
            batch.service.append(item.service)
            batch.endpoint.append(item.endpoint)
            batch.method.append(item.method)
            batch.status_code.append(status)
            batch.latency_ms.append(_latency(rng, item.median_ms, status))
            batch.trace_id.append(f"{rng.getrandbits(128):032x}")
            batch.user_ref.append(
                f"user-{rng.randrange(USER_COUNT):05d}" if rng.random() < 0.7 else None
            )
            batch.tags.append(tag_text)
        yield batch


class _WireEvent(msgspec.Struct):
    time: datetime
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: int
    trace_id: str | None
    user_ref: str | None
    tags: msgspec.Raw


def to_json(batch: EventBatch) -> bytes:
    """The batch as the JSON array that `POST /api/requests/ingest/` takes."""
    return msgspec.json.encode(
        [
            _WireEvent(t, s, e, m, c, lat, tr, u, msgspec.Raw(tg.encode()))
            for t, s, e, m, c, lat, tr, u, tg in zip(
                batch.time, batch.service, batch.endpoint, batch.method, batch.status_code,
                batch.latency_ms, batch.trace_id, batch.user_ref, batch.tags, strict=True,
            )
        ]
    )
