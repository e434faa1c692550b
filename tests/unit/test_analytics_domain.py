"""Analytics rules: windows, parameters, granularity, and how a window is split into pieces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apm.domain.analytics import (
    DAILY_SPAN,
    DAY,
    HOUR,
    HOURLY_SPAN,
    WindowPiece,
    ceil_to,
    choose_granularity,
    error_classes,
    floor_to,
    parse_kpi_query,
    parse_rollup_query,
    parse_top_query,
    plan_window,
    refresh_window,
    stretch_bounds,
    stretch_window,
)
from apm.domain.errors import ValidationFailed
from tests.support.analytics_reference import expected_source

NOW = datetime(2025, 12, 14, 12, 34, 56, 789000, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def errors_of(parse, params: dict[str, str]) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(params)
    return caught.value.errors


# --- windows (spec 2.4) ---------------------------------------------------------------------


def test_default_windows_end_now() -> None:
    hourly = parse_rollup_query({}, default_span=HOURLY_SPAN, now=NOW)
    assert (hourly.start, hourly.end, hourly.limit) == (NOW - timedelta(hours=24), NOW, 500)
    daily = parse_rollup_query({}, default_span=DAILY_SPAN, now=NOW)
    assert daily.start == NOW - timedelta(days=7)
    kpis = parse_kpi_query({}, now=NOW)
    assert (kpis.start, kpis.end) == (NOW - timedelta(hours=24), NOW)
    assert (kpis.error_from, kpis.granularity, kpis.method) == (500, "auto", None)
    assert kpis.with_p95


def test_kpis_may_skip_the_exact_p95() -> None:
    assert not parse_kpi_query({"with_p95": "false"}, now=NOW).with_p95
    assert parse_kpi_query({"with_p95": "true"}, now=NOW).with_p95
    assert "with_p95" in errors_of(lambda p: parse_kpi_query(p, now=NOW), {"with_p95": "2"})


def test_date_only_end_covers_the_whole_day_and_start_is_midnight() -> None:
    query = parse_kpi_query({"start": "2025-12-01", "end": "2025-12-03"}, now=NOW)
    assert query.start == at("2025-12-01T00:00:00")
    assert query.end == at("2025-12-04T00:00:00")


def test_date_only_end_without_start_uses_the_default_span_back_from_it() -> None:
    query = parse_kpi_query({"end": "2025-12-03"}, now=NOW)
    assert query.start == at("2025-12-03T00:00:00")


def test_offsets_are_converted_and_naive_times_are_utc() -> None:
    query = parse_kpi_query(
        {"start": "2025-12-14T10:00:00+02:00", "end": "2025-12-14T10:00:00"}, now=NOW
    )
    assert query.start == at("2025-12-14T08:00:00")
    assert query.end == at("2025-12-14T10:00:00")


def test_start_after_end_is_a_field_error_on_start() -> None:
    errors = errors_of(
        lambda p: parse_kpi_query(p, now=NOW), {"start": "2025-12-15", "end": "2025-12-13"}
    )
    assert list(errors) == ["start"]
    # The date-only end covers its whole day, so this window is empty, not reversed.
    same = parse_kpi_query({"start": "2025-12-15", "end": "2025-12-14"}, now=NOW)
    assert same.start == same.end


def test_an_empty_window_is_allowed() -> None:
    instant = "2025-12-14T10:00:00Z"
    query = parse_kpi_query({"start": instant, "end": instant}, now=NOW)
    assert query.start == query.end


@pytest.mark.parametrize("name", ["start", "end"])
def test_unparseable_times_name_the_parameter(name: str) -> None:
    errors = errors_of(lambda p: parse_kpi_query(p, now=NOW), {name: "yesterday"})
    assert name in errors


def test_dates_at_the_edge_of_the_calendar_are_field_errors_not_crashes() -> None:
    assert "end" in errors_of(lambda p: parse_kpi_query(p, now=NOW), {"end": "9999-12-31"})
    # Seven days before 0001-01-03 is before the calendar starts: the window starts there.
    query = parse_rollup_query({"end": "0001-01-02"}, default_span=DAILY_SPAN, now=NOW)
    assert query.start == datetime.min.replace(tzinfo=UTC)


def test_filters_and_method_case() -> None:
    query = parse_top_query(
        {"service": "billing", "endpoint": "/x", "method": "get", "limit": "7"}, now=NOW
    )
    assert (query.service, query.endpoint, query.method, query.limit) == (
        "billing", "/x", "GET", 7
    )
    rollup = parse_rollup_query({"method": "Post"}, default_span=HOURLY_SPAN, now=NOW)
    assert rollup.method == "POST"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"method": "FETCH"}, "method"),
        ({"error_from": "99"}, "error_from"),
        ({"error_from": "600"}, "error_from"),
        ({"error_from": "5xx"}, "error_from"),
        ({"granularity": "weekly"}, "granularity"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"sort_by": "latency"}, "sort_by"),
        ({"direction": "up"}, "direction"),
        ({"with_p95": "maybe"}, "with_p95"),
        ({"service": "x" * 256}, "service"),
    ],
)
def test_bad_top_parameters_are_field_errors(params: dict[str, str], field: str) -> None:
    assert field in errors_of(lambda p: parse_top_query(p, now=NOW), params)


def test_rollup_limit_bounds() -> None:
    parse = lambda p: parse_rollup_query(p, default_span=HOURLY_SPAN, now=NOW)  # noqa: E731
    assert parse({"limit": "5000"}).limit == 5000
    assert "limit" in errors_of(parse, {"limit": "5001"})


def test_top_options() -> None:
    query = parse_top_query(
        {"sort_by": "p95_latency_ms", "direction": "ASC", "with_p95": "yes",
         "granularity": "Daily", "error_from": "404"},
        now=NOW,
    )
    assert query.sort_by == "p95_latency_ms" and not query.descending and query.with_p95
    assert query.granularity == "daily" and query.error_from == 404


# --- granularity and pieces (spec 2.6) -------------------------------------------------------


def test_auto_granularity_switches_after_48_hours() -> None:
    start = at("2025-12-01T00:00:00")
    assert choose_granularity("auto", start=start, end=start + timedelta(hours=48)) == "hourly"
    assert choose_granularity("auto", start=start, end=start + timedelta(hours=49)) == "daily"
    assert choose_granularity("hourly", start=start, end=start + timedelta(days=30)) == "hourly"


def test_error_classes_only_at_hundred_boundaries() -> None:
    assert error_classes(500) == (5,)
    assert error_classes(400) == (4, 5)
    assert error_classes(100) == (1, 2, 3, 4, 5)
    assert error_classes(404) is None


def test_floor_and_ceil_are_utc() -> None:
    moment = datetime(2025, 12, 14, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    assert floor_to(moment, HOUR) == at("2025-12-13T20:00:00")
    assert floor_to(moment, DAY) == at("2025-12-13T00:00:00")
    assert ceil_to(moment, DAY) == at("2025-12-14T00:00:00")
    assert ceil_to(at("2025-12-14T00:00:00"), DAY) == at("2025-12-14T00:00:00")


def piece(source: str, start: str, end: str) -> WindowPiece:
    return WindowPiece(source=source, start=at(start), end=at(end))  # type: ignore[arg-type]


def test_daily_plan_uses_days_then_hours_then_raw_edges() -> None:
    plan = plan_window(
        at("2025-12-01T10:30:00"), at("2025-12-04T12:15:00"), granularity="auto"
    )
    assert plan.pieces == (
        piece("raw", "2025-12-01T10:30:00", "2025-12-01T11:00:00"),
        piece("hourly", "2025-12-01T11:00:00", "2025-12-02T00:00:00"),
        piece("daily", "2025-12-02T00:00:00", "2025-12-04T00:00:00"),
        piece("hourly", "2025-12-04T00:00:00", "2025-12-04T12:00:00"),
        piece("raw", "2025-12-04T12:00:00", "2025-12-04T12:15:00"),
    )
    assert plan.source == "daily"


def test_hourly_plan_and_aligned_edges() -> None:
    plan = plan_window(at("2025-12-01T10:00:00"), at("2025-12-01T12:00:00"), granularity="auto")
    assert plan.pieces == (piece("hourly", "2025-12-01T10:00:00", "2025-12-01T12:00:00"),)
    assert plan.source == "hourly"


def test_a_window_inside_one_hour_is_raw() -> None:
    plan = plan_window(at("2025-12-01T10:05:00"), at("2025-12-01T10:55:00"), granularity="daily")
    assert plan.pieces == (piece("raw", "2025-12-01T10:05:00", "2025-12-01T10:55:00"),)
    assert plan.source == "raw"


def test_other_error_thresholds_read_raw_events_only() -> None:
    plan = plan_window(
        at("2025-12-01T00:00:00"), at("2025-12-08T00:00:00"), granularity="daily", error_from=450
    )
    assert plan.pieces == (piece("raw", "2025-12-01T00:00:00", "2025-12-08T00:00:00"),)
    assert plan.source == "raw"


def test_empty_window_has_no_pieces() -> None:
    plan = plan_window(NOW, NOW, granularity="auto")
    assert plan.pieces == () and plan.source == "raw"


def test_source_is_the_largest_share_and_a_tie_names_the_rollup() -> None:
    # 30 min raw + 60 min hourly + 30 min raw: an even split between raw and hourly.
    plan = plan_window(at("2025-12-01T10:30:00"), at("2025-12-01T12:30:00"), granularity="auto")
    assert plan.source == "hourly"
    # 50 min raw + 60 min hourly + 55 min raw: raw served more of it.
    plan = plan_window(at("2025-12-01T10:10:00"), at("2025-12-01T12:55:00"), granularity="auto")
    assert plan.source == "raw"


def test_daily_granularity_without_a_whole_day_uses_hours() -> None:
    plan = plan_window(at("2025-12-01T10:30:00"), at("2025-12-02T09:30:00"), granularity="daily")
    assert [p.source for p in plan.pieces] == ["raw", "hourly", "raw"]
    assert plan.source == "hourly"


_instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2025, 1, 12), timezones=st.just(UTC)
)


@given(
    a=_instants,
    b=_instants,
    granularity=st.sampled_from(["auto", "hourly", "daily"]),
    error_from=st.sampled_from([100, 200, 400, 500, 404, 599]),
)
def test_pieces_tile_the_window_exactly(
    a: datetime, b: datetime, granularity: str, error_from: int
) -> None:
    start, end = min(a, b), max(a, b)
    plan = plan_window(start, end, granularity=granularity, error_from=error_from)  # type: ignore[arg-type]
    cursor = start
    for p in plan.pieces:
        assert p.start == cursor and p.start < p.end
        if p.source == "hourly":
            assert floor_to(p.start, HOUR) == p.start and floor_to(p.end, HOUR) == p.end
        if p.source == "daily":
            assert floor_to(p.start, DAY) == p.start and floor_to(p.end, DAY) == p.end
        if p.source == "raw":
            # Raw edges are shorter than an hour unless nothing else can serve.
            assert p.end - p.start < HOUR or len(plan.pieces) == 1
        cursor = p.end
    assert cursor == end or (start == end and plan.pieces == ())
    assert plan.source == expected_source(start, end, granularity, error_from)


def test_stretch_bounds_are_the_enclosing_hours_or_days() -> None:
    start, end = at("2025-12-01T10:30:00"), at("2025-12-04T12:15:00")
    assert stretch_bounds(start, end, level="hourly") == (
        at("2025-12-01T10:00:00"), at("2025-12-04T13:00:00")
    )
    assert stretch_bounds(start, end, level="daily") == (
        at("2025-12-01T00:00:00"), at("2025-12-05T00:00:00")
    )


def test_a_window_stretches_only_over_time_without_events() -> None:
    start, end = at("2025-12-01T10:30:00"), at("2025-12-04T12:15:00")

    def stretched(level: str, before: str | None, after: str | None) -> tuple[str, str]:
        wide = stretch_window(
            start, end, level=level,  # type: ignore[arg-type]
            last_before=None if before is None else at(before),
            first_after=None if after is None else at(after),
        )
        return wide[0].isoformat()[:16], wide[1].isoformat()[:16]

    # Nothing around the window: out to the day (daily level) or the hour.
    assert stretched("daily", None, None) == ("2025-12-01T00:00", "2025-12-05T00:00")
    assert stretched("hourly", None, None) == ("2025-12-01T10:00", "2025-12-04T13:00")
    # Events earlier in the day but not in the edge hours: out to the hours.
    assert stretched("daily", "2025-12-01T09:59:59", "2025-12-04T13:00:00") == (
        "2025-12-01T10:00", "2025-12-04T13:00"
    )
    # An event in the edge hour, outside the window: that edge stays where it was.
    assert stretched("daily", "2025-12-01T10:00:00", "2025-12-04T12:59:59") == (
        "2025-12-01T10:30", "2025-12-04T12:15"
    )
    assert stretched("hourly", "2025-12-01T10:29:59", "2025-12-04T12:15:00") == (
        "2025-12-01T10:30", "2025-12-04T12:15"
    )


@given(
    a=_instants,
    b=_instants,
    events=st.lists(_instants, max_size=6),
    level=st.sampled_from(["hourly", "daily"]),
)
def test_a_stretched_window_holds_the_same_events(
    a: datetime, b: datetime, events: list[datetime], level: str
) -> None:
    start, end = min(a, b), max(a, b)
    lo, hi = stretch_bounds(start, end, level=level)  # type: ignore[arg-type]
    before = [t for t in events if lo <= t < start]
    after = [t for t in events if end <= t < hi]
    wide_start, wide_end = stretch_window(
        start, end, level=level,  # type: ignore[arg-type]
        last_before=max(before, default=None), first_after=min(after, default=None),
    )
    assert lo <= wide_start <= start and end <= wide_end <= hi
    assert [t for t in events if start <= t < end] == [
        t for t in events if wide_start <= t < wide_end
    ]
    for edge in (wide_start, wide_end):
        assert edge in (start, end) or floor_to(edge, HOUR) == edge


def test_refresh_window_defaults_to_the_last_seven_days() -> None:
    assert refresh_window(None, None, now=NOW) == (NOW - timedelta(days=7), NOW)
    start = at("2025-12-01T00:00:00")
    assert refresh_window(start, None, now=NOW) == (start, NOW)
