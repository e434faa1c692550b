from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apm.domain.errors import ValidationFailed
from apm.domain.validation import clean_record, record_from_json

GOOD = {
    "time": "2025-12-14T12:00:00+02:00",
    "service": "  billing ",
    "endpoint": "/api/v1/invoices",
    "method": "get",
    "status_code": 200,
    "latency_ms": 123,
}


def test_a_good_record_is_cleaned() -> None:
    data = record_from_json(GOOD)
    assert data.time == datetime(2025, 12, 14, 10, tzinfo=UTC)
    assert data.service == "billing"
    assert data.method == "GET"
    assert data.tags == {} and data.trace_id is None


def test_naive_time_is_utc() -> None:
    assert record_from_json({**GOOD, "time": "2025-12-14T12:00:00"}).time.tzinfo == UTC


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("status_code", 600, "status_code must be a valid HTTP status (100..599)."),
        ("status_code", True, "status_code must be an integer."),
        ("status_code", 3.5, "status_code must be an integer."),
        ("status_code", "200", "status_code must be an integer."),
        ("latency_ms", -1, "latency_ms must be between 0 and 2147483647."),
        ("latency_ms", 2**31, "latency_ms must be between 0 and 2147483647."),
        ("service", "   ", "service must not be blank."),
        ("service", "x" * 101, "service must be at most 100 characters."),
        ("endpoint", "", "endpoint must not be blank."),
        ("method", "FOO", "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS."),
        ("tags", [], "tags must be a JSON object."),
        ("tags", None, "tags must be a JSON object."),
        ("trace_id", "t" * 129, "trace_id must be at most 128 characters."),
        ("time", "yesterday", "time must be an ISO-8601 datetime string."),
        ("time", 1700000000, "time must be an ISO-8601 datetime string."),
        ("service", "a\x00b", "service must not contain NUL characters."),
    ],
)
def test_each_rule_names_its_field(field: str, value: object, message: str) -> None:
    _, errors = clean_record({**GOOD, field: value})
    assert errors == {field: [message]}


def test_missing_fields_are_all_reported() -> None:
    with pytest.raises(ValidationFailed) as caught:
        record_from_json({"service": "x"})
    assert set(caught.value.errors) == {"time", "endpoint", "method", "status_code", "latency_ms"}


def test_integral_float_is_accepted() -> None:
    assert record_from_json({**GOOD, "status_code": 201.0}).status_code == 201


def test_partial_checks_only_given_fields() -> None:
    values, errors = clean_record({"latency_ms": 5, "unknown": 1}, partial=True)
    assert values == {"latency_ms": 5} and errors == {}


def test_a_non_object_is_a_non_field_error() -> None:
    _, errors = clean_record([1, 2])
    assert errors == {"non_field_errors": ["Each event must be a JSON object."]}


def test_deep_tags_are_refused() -> None:
    deep: dict = {}
    node = deep
    for _ in range(10):
        node["a"] = {}
        node = node["a"]
    _, errors = clean_record({**GOOD, "tags": deep})
    assert "tags" in errors
