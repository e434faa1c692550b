"""Analytics read model: windows, rollup rows, KPIs and top endpoints, and their rules.

Windows are half-open `[start, end)` on event time, aware UTC. Latencies are milliseconds.
Every figure is exact: it equals the same aggregate over the raw events of the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from apm.domain.errors import ValidationFailed
from apm.domain.listing import MAX_FILTER_LENGTH, parse_bool, parse_int
from apm.domain.records import METHODS
from apm.domain.validation import Errors, end_of_day, parse_instant

Granularity = Literal["auto", "hourly", "daily"]
Source = Literal["hourly", "daily", "raw"]
SortKey = Literal[
    "hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"
]
SORT_KEYS: tuple[str, ...] = (
    "hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"
)
HOURLY_SPAN = timedelta(hours=24)
DAILY_SPAN = timedelta(days=7)
KPI_SPAN = timedelta(hours=24)
AUTO_HOURLY_MAX = timedelta(hours=48)
MAX_WINDOW = timedelta(days=3660)
REFRESH_SPAN = timedelta(days=7)
ROLLUP_LIMIT_MAX = 5000
TOP_LIMIT_MAX = 200
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
# Status classes 1xx..5xx: the rollups count each class, so an error threshold at a hundred
# boundary is a sum of classes; any other threshold needs the raw events.
STATUS_CLASSES = (1, 2, 3, 4, 5)


class RollupQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Rows whose bucket starts in `[start floored to the bucket, end)`; methods merged."""

    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    limit: int = 500


class HourlyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One (bucket, service, endpoint); `errors` counts status >= 500."""

    bucket: datetime
    service: str
    endpoint: str
    hits: int
    errors: int
    avg_latency_ms: float | None
    max_latency_ms: int | None


class DailyRow(msgspec.Struct, frozen=True, kw_only=True):
    """As HourlyRow, plus the exact percentile_cont(0.95) of that day's events for the pair."""

    bucket: datetime
    service: str
    endpoint: str
    hits: int
    errors: int
    avg_latency_ms: float | None
    max_latency_ms: int | None
    p95_latency_ms: float | None


class KpiQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    error_from: int = 500
    granularity: Granularity = "auto"
    # The exact p95 reads every event of the window; a caller that does not need it can skip
    # that cost (the other figures come from the rollups).
    with_p95: bool = True


class KpiSummary(msgspec.Struct, frozen=True, kw_only=True):
    hits: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: int | None
    source: Source


class TopQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    error_from: int = 500
    granularity: Granularity = "auto"
    limit: int = 20
    sort_by: SortKey = "hits"
    descending: bool = True
    with_p95: bool = False


class TopEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    endpoint: str
    hits: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: int | None


class TopEndpoints(msgspec.Struct, frozen=True, kw_only=True):
    source: Source
    results: list[TopEndpoint]


class RefreshResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a manual refresh did; `refreshed` is False on a backend without materialised rollups."""

    refreshed: bool
    message: str


def parse_window(
    params: Mapping[str, str], *, default_span: timedelta, now: datetime, errors: Errors
) -> tuple[datetime, datetime]:
    """`start`/`end` (spec 2.4): date-only `end` covers that whole day; defaults end=now."""
    end = now
    if raw_end := params.get("end"):
        instant = parse_instant(raw_end)
        if instant is None:
            errors["end"] = ["end must be an ISO-8601 datetime or date."]
        else:
            try:
                end = end_of_day(instant[0]) if instant[1] else instant[0]
            except OverflowError:
                errors["end"] = ["end is out of the supported range of dates."]
    try:
        start = end - default_span
    except OverflowError:
        start = datetime.min.replace(tzinfo=UTC)
    if raw_start := params.get("start"):
        instant = parse_instant(raw_start)
        if instant is None:
            errors["start"] = ["start must be an ISO-8601 datetime or date."]
        else:
            start = instant[0]
    if "end" not in errors and end > LATEST:
        # Bucket arithmetic (the next hour or day) must stay within Python's datetime range.
        errors["end"] = ["end is out of the supported range of dates."]
    if "start" not in errors and "end" not in errors:
        if start > end:
            errors["start"] = ["start must not be after end."]
        elif end - start > MAX_WINDOW:
            errors["start"] = [f"the window must not be longer than {MAX_WINDOW.days} days."]
    return start, end


def _filters(params: Mapping[str, str], errors: Errors) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("service", "endpoint"):
        value = params.get(name) or None
        if value is not None and (len(value) > MAX_FILTER_LENGTH or "\x00" in value):
            errors[name] = [f"{name} must be at most {MAX_FILTER_LENGTH} characters, without NUL."]
            value = None
        found[name] = value
    return found


def _method(params: Mapping[str, str], errors: Errors) -> str | None:
    """`method` is case-insensitive (spec 2.4)."""
    if not (method := params.get("method")):
        return None
    if method.strip().upper() in METHODS:
        return method.strip().upper()
    errors["method"] = [f"method must be one of {', '.join(METHODS)}."]
    return None


def _kpi_fields(
    params: Mapping[str, str], *, now: datetime, errors: Errors
) -> dict[str, object]:
    start, end = parse_window(params, default_span=KPI_SPAN, now=now, errors=errors)
    fields: dict[str, object] = {"start": start, "end": end, **_filters(params, errors)}
    fields["method"] = _method(params, errors)
    if params.get("error_from"):
        fields["error_from"] = parse_int("error_from", params["error_from"], 100, 599, errors)
    if granularity := params.get("granularity"):
        if granularity.strip().lower() in ("auto", "hourly", "daily"):
            fields["granularity"] = granularity.strip().lower()
        else:
            errors["granularity"] = ["granularity must be one of auto, hourly, daily."]
    return fields


def parse_rollup_query(
    params: Mapping[str, str], *, default_span: timedelta, now: datetime
) -> RollupQuery:
    errors: Errors = {}
    start, end = parse_window(params, default_span=default_span, now=now, errors=errors)
    fields = _filters(params, errors)
    method = _method(params, errors)
    limit = 500
    if params.get("limit"):
        limit = parse_int("limit", params["limit"], 1, ROLLUP_LIMIT_MAX, errors) or limit
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return RollupQuery(start=start, end=end, method=method, limit=limit, **fields)


def _with_p95(params: Mapping[str, str], fields: dict[str, object], errors: Errors) -> None:
    if params.get("with_p95"):
        flag = parse_bool(params["with_p95"])
        if flag is None:
            errors["with_p95"] = ["with_p95 must be a boolean (true/false)."]
        else:
            fields["with_p95"] = flag


def parse_kpi_query(params: Mapping[str, str], *, now: datetime) -> KpiQuery:
    errors: Errors = {}
    fields = _kpi_fields(params, now=now, errors=errors)
    _with_p95(params, fields, errors)
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return KpiQuery(**fields)  # type: ignore[arg-type]


def parse_top_query(params: Mapping[str, str], *, now: datetime) -> TopQuery:
    errors: Errors = {}
    fields = _kpi_fields(params, now=now, errors=errors)
    if params.get("limit"):
        fields["limit"] = parse_int("limit", params["limit"], 1, TOP_LIMIT_MAX, errors)
    if sort_by := params.get("sort_by"):
        if sort_by.strip() in SORT_KEYS:
            fields["sort_by"] = sort_by.strip()
        else:
            errors["sort_by"] = [f"sort_by must be one of {', '.join(SORT_KEYS)}."]
    if direction := params.get("direction"):
        if direction.strip().lower() in ("asc", "desc"):
            fields["descending"] = direction.strip().lower() == "desc"
        else:
            errors["direction"] = ["direction must be asc or desc."]
    _with_p95(params, fields, errors)
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return TopQuery(**fields)  # type: ignore[arg-type]


def choose_granularity(granularity: Granularity, *, start: datetime, end: datetime) -> Source:
    """auto: windows of 48 hours or less use hourly rollups, longer ones daily."""
    if granularity == "auto":
        return "hourly" if end - start <= AUTO_HOURLY_MAX else "daily"
    return granularity


def floor_to(instant: datetime, step: timedelta) -> datetime:
    """The start of the UTC hour or day holding `instant`."""
    instant = instant.astimezone(UTC)
    if step == HOUR:
        return instant.replace(minute=0, second=0, microsecond=0)
    if step == DAY:
        return instant.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError("step must be one hour or one day")


def ceil_to(instant: datetime, step: timedelta) -> datetime:
    """The first UTC hour or day start at or after `instant`."""
    floor = floor_to(instant, step)
    return floor if floor == instant else floor + step


def error_classes(error_from: int) -> tuple[int, ...] | None:
    """The status classes that make up `status_code >= error_from`, or None when the
    threshold is not at a hundred boundary (then only the raw events can answer)."""
    if error_from % 100:
        return None
    return tuple(k for k in STATUS_CLASSES if k >= error_from // 100)


class WindowPiece(msgspec.Struct, frozen=True, kw_only=True):
    """A part `[start, end)` of a window and what serves it."""

    source: Source
    start: datetime
    end: datetime


class WindowPlan(msgspec.Struct, frozen=True, kw_only=True):
    """How to answer a window exactly: whole days from the daily rollup (daily granularity),
    whole hours from the hourly rollup, the sub-hour edges from raw events.

    `source` names what served the largest share of the window's time; on a tie the coarser
    rollup is named, and an empty window is `raw`.
    """

    pieces: tuple[WindowPiece, ...]
    source: Source


_PREFERENCE: dict[str, int] = {"daily": 2, "hourly": 1, "raw": 0}


def plan_window(
    start: datetime, end: datetime, *, granularity: Granularity, error_from: int = 500
) -> WindowPlan:
    """Split `[start, end)` into the pieces each source serves exactly (spec 2.6)."""
    if error_classes(error_from) is None or end <= start:
        pieces: list[WindowPiece] = []
        if end > start:
            pieces.append(WindowPiece(source="raw", start=start, end=end))
        return WindowPlan(pieces=tuple(pieces), source="raw")
    level = choose_granularity(granularity, start=start, end=end)
    hour_lo, hour_hi = ceil_to(start, HOUR), floor_to(end, HOUR)
    if hour_lo >= hour_hi:
        return WindowPlan(
            pieces=(WindowPiece(source="raw", start=start, end=end),), source="raw"
        )
    spans: list[tuple[Source, datetime, datetime]] = [("raw", start, hour_lo)]
    day_lo, day_hi = ceil_to(start, DAY), floor_to(end, DAY)
    if level == "daily" and day_lo < day_hi:
        spans += [
            ("hourly", hour_lo, day_lo), ("daily", day_lo, day_hi), ("hourly", day_hi, hour_hi)
        ]
    else:
        spans.append(("hourly", hour_lo, hour_hi))
    spans.append(("raw", hour_hi, end))
    pieces = [WindowPiece(source=s, start=a, end=b) for s, a, b in spans if a < b]
    share: dict[str, timedelta] = {}
    for piece in pieces:
        share[piece.source] = share.get(piece.source, timedelta(0)) + piece.end - piece.start
    source = max(share, key=lambda name: (share[name], _PREFERENCE[name]))
    return WindowPlan(pieces=tuple(pieces), source=source)  # type: ignore[arg-type]


def stretch_bounds(start: datetime, end: datetime, *, level: Source) -> tuple[datetime, datetime]:
    """The farthest a window answered at `level` may be stretched (see `stretch_window`): the
    start of the UTC day (daily level) or hour holding `start`, and the first such boundary
    at or after `end`."""
    step = DAY if level == "daily" else HOUR
    return floor_to(start, step), ceil_to(end, step)


def stretch_window(
    start: datetime,
    end: datetime,
    *,
    level: Source,
    last_before: datetime | None,
    first_after: datetime | None,
) -> tuple[datetime, datetime]:
    """`[start, end)` stretched outward to the nearest day (daily level) or hour boundaries
    over time that holds no events. `last_before` is the latest event before `start` and
    `first_after` the earliest at or after `end`, each None when `stretch_bounds` holds none.

    The stretched window holds exactly the same events, so every figure over it is the same,
    and fewer of its buckets are partial: a whole-bucket rollup row then serves what the raw
    events of a partial edge would (at the edge of "now", the usual case, the last bucket is
    partial only because the rest of it has not happened yet)."""
    steps = (DAY, HOUR) if level == "daily" else (HOUR,)
    lower = [floor_to(start, step) for step in steps]
    upper = [ceil_to(end, step) for step in steps]
    wide_start = next((b for b in lower if last_before is None or last_before < b), start)
    wide_end = next((b for b in upper if first_after is None or first_after >= b), end)
    return wide_start, wide_end


def refresh_window(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """A manual refresh covers the given window; by default the last 7 days (spec 2.8)."""
    end = now if end is None else end
    start = end - REFRESH_SPAN if start is None else start
    return start, end
