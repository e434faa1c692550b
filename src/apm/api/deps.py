"""The ports the controllers use, handed over by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from litestar.datastructures import State

from apm.domain.ports import AnalyticsPort, IngestPort, RecordPort, StatusPort


@dataclass(frozen=True, kw_only=True)
class Limits:
    page_size: int = 50
    ingest_batch_size: int = 1000
    ingest_max_events: int = 50_000
    ingest_max_errors: int = 25
    max_body_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Ports:
    records: RecordPort
    ingest: IngestPort
    analytics: AnalyticsPort
    status: StatusPort
    limits: Limits = field(default_factory=Limits)


def provide_ports(state: State) -> Ports:
    return state.ports
