"""Decoding and validating an ingest payload (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apm.domain.errors import ValidationFailed
from apm.domain.ingest import (
    EventsRejected,
    IngestOptions,
    MalformedPayload,
    TooManyEvents,
    UnexpectedPayload,
    decode_ingest,
    parse_ingest_options,
)
from apm.domain.validation import clean_record

OPTIONS = IngestOptions(max_events=1000, max_errors=1000, batch_size=100)
EVENT: dict[str, Any] = {
    "time": "2025-12-14T12:00:00+02:00",
    "service": " billing ",
    "endpoint": "/x",
    "method": "get",
    "status_code": 200,
    "latency_ms": 7,
}


def decode(items: Any, options: IngestOptions = OPTIONS):
    return decode_ingest(msgspec.json.encode(items), options)


# --- options ------------------------------------------------------------------------------

LIMITS = {"max_events": 100, "max_errors": 10, "batch_size": 30}


def test_options_default_to_the_settings() -> None:
    assert parse_ingest_options({}, **LIMITS) == IngestOptions(
        max_events=100, max_errors=10, batch_size=30, strict=False
    )
    # Empty values count as absent, as in the list parameters.
    assert parse_ingest_options({"max_events": "", "strict": ""}, **LIMITS).max_events == 100


def test_options_within_bounds() -> None:
    options = parse_ingest_options(
        {"max_events": "50", "max_errors": "0", "batch_size": "5", "strict": "Yes"}, **LIMITS
    )
    assert options == IngestOptions(max_events=50, max_errors=0, batch_size=5, strict=True)


@pytest.mark.parametrize(
    ("params", "batch_size"),
    [
        ({"batch_size": "1000000"}, 100),
        ({"max_events": "20"}, 20),
        ({"max_events": "20", "batch_size": "21"}, 20),
    ],
)
def test_batch_size_is_clamped_to_max_events(params: dict[str, str], batch_size: int) -> None:
    assert parse_ingest_options(params, **LIMITS).batch_size == batch_size


def test_a_default_batch_larger_than_max_events_is_clamped() -> None:
    assert parse_ingest_options({}, max_events=10, max_errors=1, batch_size=5000).batch_size == 10


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"max_events": "0"}, {"max_events": ["max_events must be between 1 and 100."]}),
        ({"max_events": "101"}, {"max_events": ["max_events must be between 1 and 100."]}),
        ({"max_events": "x"}, {"max_events": ["max_events must be a whole number."]}),
        ({"max_errors": "11"}, {"max_errors": ["max_errors must be between 0 and 10."]}),
        ({"max_errors": "-1"}, {"max_errors": ["max_errors must be between 0 and 10."]}),
        ({"batch_size": "0"}, {"batch_size": ["batch_size must be at least 1."]}),
        ({"batch_size": "1.5"}, {"batch_size": ["batch_size must be a whole number."]}),
        (
            {"strict": "perhaps"},
            {"strict": ["strict must be a boolean (true/false, 1/0, yes/no, on/off)."]},
        ),
        (
            {"max_events": "0", "strict": "2"},
            {
                "max_events": ["max_events must be between 1 and 100."],
                "strict": ["strict must be a boolean (true/false, 1/0, yes/no, on/off)."],
            },
        ),
    ],
)
def test_bad_options_name_the_parameter(
    params: dict[str, str], errors: dict[str, list[str]]
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_ingest_options(params, **LIMITS)
    assert raised.value.errors == errors


# --- payload shape ------------------------------------------------------------------------


def test_a_list_and_an_events_object_give_the_same_batch() -> None:
    assert decode([EVENT, EVENT]).batch == decode({"events": [EVENT, EVENT], "meta": 1}).batch
    plan = decode([])
    assert (plan.total, plan.rejected, len(plan.batch)) == (0, 0, 0)


@pytest.mark.parametrize(
    "body", [b"1", b"true", b'"x"', b"{}", b'{"events": null}', b'{"events": {}}']
)
def test_other_shapes_are_refused(body: bytes) -> None:
    with pytest.raises(UnexpectedPayload) as raised:
        decode_ingest(body, OPTIONS)
    assert "array of events" in raised.value.detail


@pytest.mark.parametrize(
    "body", [b"", b"[", b"[1,]", b'[{"a" 1}]', b'["\xc3"]', b'[{"t": "\xff"}]']
)
def test_malformed_json_is_refused_with_the_reason(body: bytes) -> None:
    with pytest.raises(MalformedPayload) as raised:
        decode_ingest(body, OPTIONS)
    assert raised.value.detail.startswith("Malformed JSON: ")


def test_too_many_events() -> None:
    with pytest.raises(TooManyEvents) as raised:
        decode([1, 2, 3], IngestOptions(max_events=2, max_errors=1, batch_size=1))
    assert raised.value.detail == "Too many events: got 3, max allowed is 2."
    assert raised.value.extra == {"max_events": 2}


# --- events -------------------------------------------------------------------------------


def test_a_valid_event_is_cleaned() -> None:
    plan = decode([{**EVENT, "tags": {"b": [1, {"c": None}]}, "extra": "ignored"}])
    batch = plan.batch
    assert batch.time == [datetime(2025, 12, 14, 10, tzinfo=UTC)]
    assert (batch.service, batch.endpoint, batch.method) == (["billing"], ["/x"], ["GET"])
    assert (batch.status_code, batch.latency_ms) == ([200], [7])
    assert (batch.trace_id, batch.user_ref, batch.tags) == (
        [None],
        [None],
        ['{"b":[1,{"c":null}]}'],
    )


def test_tags_keep_the_text_as_sent() -> None:
    body = (
        b'[{"time":"2025-12-14T12:00:00","service":"s","endpoint":"/e","method":"GET",'
        b'"status_code":200,"latency_ms":1,"tags":{ "b" : 1.50, "a":"\\u00e9" }}]'
    )
    assert decode_ingest(body, OPTIONS).batch.tags == ['{ "b" : 1.50, "a":"\\u00e9" }']


def test_errors_are_listed_in_order_up_to_max_errors_and_all_counted() -> None:
    items = [EVENT, 5, {**EVENT, "status_code": 99}, EVENT, {}, {**EVENT, "latency_ms": None}]
    plan = decode(items, IngestOptions(max_events=10, max_errors=2, batch_size=1))
    assert (plan.total, plan.rejected, len(plan.batch)) == (6, 4, 2)
    assert [msgspec.structs.asdict(error) for error in plan.errors] == [
        {"index": 1, "errors": {"non_field_errors": ["Each event must be a JSON object."]}},
        {
            "index": 2,
            "errors": {"status_code": ["status_code must be a valid HTTP status (100..599)."]},
        },
    ]
    report = plan.report(2)
    assert (report.inserted, report.rejected, len(report.errors)) == (2, 4, 2)
    assert decode(items, IngestOptions(max_events=10, max_errors=0, batch_size=1)).errors == []


def test_strict_refuses_with_the_counting_body() -> None:
    options = IngestOptions(max_events=10, max_errors=1, batch_size=1, strict=True)
    with pytest.raises(EventsRejected) as raised:
        decode([EVENT, {**EVENT, "method": "X"}, 3], options)
    assert raised.value.detail
    assert raised.value.extra == {
        "inserted": 0,
        "rejected": 3,
        "errors": [
            {
                "index": 1,
                "errors": {
                    "method": [
                        "method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS."
                    ]
                },
            }
        ],
    }
    assert len(decode([EVENT, EVENT], options).batch) == 2


@pytest.mark.parametrize(
    "tags",
    [
        {"k": "\x00"},
        {"\x00": 1},
        {"k": "x" * 1025},
        {"k": list(range(257))},
        {f"k{i}": i for i in range(257)},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
        {"a": [[[[[[[[1]]]]]]]]},
        [],
        "x",
        None,
    ],
)
def test_tags_break_the_same_rules_as_in_the_record_api(tags: Any) -> None:
    expected = clean_record({**EVENT, "tags": tags})[1]
    plan = decode([{**EVENT, "tags": tags}])
    assert expected and [error.errors for error in plan.errors] == [expected]


# --- the fast path agrees with the record rules --------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
times = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2025-12-14T12:00:00Z",
            "2025-12-14",
            "2025-12-14 12:00",
            "20251214T120000",
            "2025-12-14T12:00:00.123456789Z",
            "2025-12-14t12:00:00z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            " 2025-12-14T12:00:00Z",
            "soon",
            "",
        ]
    ),
    json_values,
)
texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["  svc  ", "", "   ", "a\x00b", "x" * 100, " " + "x" * 100, "x" * 256, "é" * 255]
    ),
    json_values,
)
methods = st.one_of(
    st.sampled_from(
        ["GET", "get", "Get", "gEt", " post ", "OPTIONS", "options", "FOO", "", "\tput"]
    ),
    json_values,
)
numbers = st.one_of(
    st.integers(-10, 700),
    st.sampled_from([2**31 - 1, 2**31, 200.0, 200.5, 1e3, True, False, "200", 2**70]),
    json_values,
)
refs = st.one_of(
    st.none(), st.text(max_size=130), st.sampled_from(["t\x00", "x" * 128, "x" * 129]), json_values
)
tag_values = st.one_of(
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.sampled_from(
        [
            {},
            {"k": "\x00"},
            {"k": "x" * 1025},
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}},
        ]
    ),
    json_values,
)
events = st.one_of(
    st.fixed_dictionaries(
        {
            "time": times,
            "service": texts,
            "endpoint": texts,
            "method": methods,
            "status_code": numbers,
            "latency_ms": numbers,
        },
        optional={"trace_id": refs, "user_ref": refs, "tags": tag_values, "other": json_values},
    ),
    st.fixed_dictionaries(
        {
            "time": st.datetimes().map(lambda d: d.isoformat()),
            "service": st.just("s"),
            "endpoint": st.just("/e"),
            "method": st.just("GET"),
            "status_code": st.integers(100, 599),
            "latency_ms": st.integers(0, 10),
        },
        optional={"trace_id": refs, "tags": tag_values},
    ),
    json_values,
)


# Items every field of which has the type the fast path decodes, so that the whole array takes
# the one-pass typed decode; the values may still break the rules.
typed_events = st.fixed_dictionaries(
    {
        "time": times.filter(lambda value: isinstance(value, str)),
        "service": st.one_of(st.text(max_size=8), texts.filter(lambda v: isinstance(v, str))),
        "endpoint": st.one_of(st.text(max_size=8), texts.filter(lambda v: isinstance(v, str))),
        "method": methods.filter(lambda value: isinstance(value, str)),
        "status_code": st.integers(100, 599),
        "latency_ms": st.integers(0, 2**31 - 1),
    },
    optional={
        "trace_id": st.none() | st.text(max_size=130) | st.just("t\x00"),
        "user_ref": st.none() | st.text(max_size=130),
        "tags": tag_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=8) | st.lists(typed_events, max_size=8))
def test_every_event_is_judged_as_the_record_api_judges_it(items: list[Any]) -> None:
    body = msgspec.json.encode(items)
    plan = decode_ingest(body, OPTIONS)
    expected_rows: list[tuple[Any, ...]] = []
    expected_errors: list[tuple[int, dict[str, list[str]]]] = []
    for index, item in enumerate(msgspec.json.decode(body)):
        values, errors = clean_record(item)
        if errors:
            expected_errors.append((index, errors))
        else:
            expected_rows.append(
                (
                    values["time"],
                    values["service"],
                    values["endpoint"],
                    values["method"],
                    values["status_code"],
                    values["latency_ms"],
                    values["trace_id"],
                    values["user_ref"],
                    values["tags"],
                )
            )
    batch = plan.batch
    rows = list(
        zip(
            batch.time,
            batch.service,
            batch.endpoint,
            batch.method,
            batch.status_code,
            batch.latency_ms,
            batch.trace_id,
            batch.user_ref,
            [msgspec.json.decode(tags) for tags in batch.tags],
            strict=True,
        )
    )
    assert rows == expected_rows
    assert [(error.index, error.errors) for error in plan.errors] == expected_errors
    assert (plan.total, plan.rejected) == (len(items), len(expected_errors))
    for moment, status, latency in zip(
        batch.time, batch.status_code, batch.latency_ms, strict=True
    ):
        assert moment.tzinfo is UTC and type(status) is int and type(latency) is int


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'[{"tags": ' + b"[" * 5000 + b"]" * 5000 + b"}]",
        b'{"events": [{"x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}]}",
    ],
)
def test_deeply_nested_json_is_malformed_not_a_crash(body: bytes) -> None:
    with pytest.raises(MalformedPayload) as raised:
        decode_ingest(body, OPTIONS)
    assert raised.value.detail == "Malformed JSON: nested too deeply."


def test_events_of_the_right_types_that_break_rules_are_judged_by_the_record_rules() -> None:
    items = [
        EVENT,
        {**EVENT, "service": "   "},
        {**EVENT, "endpoint": "a\x00"},
        {**EVENT, "method": "FOO"},
        {**EVENT, "time": "soon"},
        {**EVENT, "time": "0001-01-01T00:00:00+01:00"},
        {**EVENT, "trace_id": "t\x00"},
        {**EVENT, "tags": {"k": "\x00"}},
        {**EVENT, "tags": []},
        {**EVENT, "method": " pUt ", "tags": {"a": [1]}},
    ]
    plan = decode(items)
    expected = [(i, clean_record(item)[1]) for i, item in enumerate(items)]
    assert [(error.index, error.errors) for error in plan.errors] == [
        (i, errors) for i, errors in expected if errors
    ]
    assert plan.batch.method == ["GET", "PUT"]
    assert plan.batch.tags[1] == '{"a":[1]}'
