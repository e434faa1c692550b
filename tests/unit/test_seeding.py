"""The synthetic event generator: repeatable, valid, and shaped like real traffic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from apm.domain.validation import clean_record
from apm.seeding import generate, service_names, to_json

NOW = datetime(2025, 12, 14, 12, 0, tzinfo=UTC)


def flat(**kwargs):
    batches = list(generate(now=NOW, **kwargs))
    return batches, [i for batch in batches for i in zip(
        batch.time, batch.service, batch.endpoint, batch.method, batch.status_code,
        batch.latency_ms, batch.trace_id, batch.user_ref, batch.tags, strict=True,
    )]


def test_count_chunks_and_window() -> None:
    batches, events = flat(count=2500, days=2, seed=1, chunk_size=1000)
    assert [len(batch) for batch in batches] == [1000, 1000, 500]
    assert len(events) == 2500
    assert all(NOW - timedelta(days=2) <= event[0] < NOW for event in events)
    assert all(event[0].tzinfo is not None for event in events)


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert flat(count=300, days=1, seed=7)[1] == flat(count=300, days=1, seed=7)[1]
    assert flat(count=300, days=1, seed=7)[1] != flat(count=300, days=1, seed=8)[1]


def test_services_and_endpoints_as_asked() -> None:
    _, events = flat(count=20_000, days=7, seed=3, services=4, endpoints_per_service=6)
    assert {event[1] for event in events} == set(service_names(4))
    per_service = Counter(service for service, _, _ in {(e[1], e[2], e[3]) for e in events})
    assert set(per_service.values()) == {6}


def test_traffic_shape_is_realistic() -> None:
    _, events = flat(count=50_000, days=7, seed=5)
    classes = Counter(event[4] // 100 for event in events)
    assert 0.02 < classes[5] / len(events) < 0.04
    assert 0.05 < classes[4] / len(events) < 0.09
    assert classes[2] / len(events) > 0.8
    latencies = sorted(event[5] for event in events)
    median, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    assert 5 <= median <= 200 and p99 > 3 * median  # a long tail, as log-normal has
    by_endpoint = Counter((event[1], event[2], event[3]) for event in events).most_common()
    assert by_endpoint[0][1] > 5 * by_endpoint[-1][1]  # a few endpoints dominate
    assert len({event[6] for event in events}) == len(events)  # trace ids are unique
    assert 0.6 < sum(event[7] is not None for event in events) / len(events) < 0.8
    hours = Counter(event[0].hour for event in events)
    assert hours[15] > 2 * hours[3]  # busy afternoons, quiet nights


def test_wire_form_passes_the_api_rules() -> None:
    (batch,) = generate(count=200, days=1, now=NOW, seed=9, chunk_size=200)
    decoded = msgspec.json.decode(to_json(batch))
    assert len(decoded) == 200
    for index, event in enumerate(decoded):
        values, errors = clean_record(event)
        assert errors == {}
        assert values["time"] == batch.time[index]
        assert values["tags"] == msgspec.json.decode(batch.tags[index])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        next(generate(count=10, days=0, now=NOW))
    with pytest.raises(ValueError):
        next(generate(count=10, days=1, now=NOW, endpoints_per_service=10_000))
