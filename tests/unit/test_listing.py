from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apm.domain.errors import ValidationFailed
from apm.domain.listing import OrderKey, parse_list_query


def parse(**params: str):
    return parse_list_query(params, default_page_size=50)


def test_defaults() -> None:
    query = parse()
    assert query.ordering == (OrderKey(field="time", descending=True),)
    assert (query.page, query.page_size) == (1, 50)


def test_ordering_list() -> None:
    assert parse(ordering="-time,latency_ms").ordering == (
        OrderKey(field="time", descending=True),
        OrderKey(field="latency_ms", descending=False),
    )


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ordering", "tags"),
        ("ordering", "-id;drop table api_requests"),
        ("page", "0"),
        ("page", "x"),
        ("page_size", "1001"),
        ("status_code", "abc"),
        ("status_code__in", "200,abc"),
        ("time_after", "not-a-date"),
        ("latency_min", "fast"),
        ("method", "FOO"),
    ],
)
def test_bad_values_name_the_parameter(param: str, value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(**{param: value})
    assert list(caught.value.errors) == [param]


def test_filters() -> None:
    query = parse(
        service="auth", method="get", status_code__in="200, 500", search="log, in",
        time_after="2025-12-01", time_before="2025-12-31", latency_min="1.5",
    )
    assert query.service == "auth" and query.method == "GET"
    assert query.status_codes == (200, 500)
    assert query.search_terms == ("log", "in")
    assert query.time_after == datetime(2025, 12, 1, tzinfo=UTC)
    # A date-only upper bound includes that whole day.
    assert query.time_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert query.time_before_exclusive
    assert query.latency_min == 1.5
