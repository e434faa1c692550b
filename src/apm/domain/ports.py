"""Ports: the capabilities the API needs from storage. Adapters implement them.

Windows are half-open `[start, end)`; times are aware UTC; latencies are milliseconds.
Every method is one transaction; storage failures raise `StorageUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

from apm.domain.analytics import (
    DailyRow,
    Granularity,
    HourlyRow,
    KpiQuery,
    KpiSummary,
    RefreshResult,
    RollupQuery,
    TopEndpoints,
    TopQuery,
)
from apm.domain.ingest import EventBatch
from apm.domain.listing import ListQuery, Page
from apm.domain.records import ApiRequest, ApiRequestData


class RecordPort(Protocol):
    """Create, read, update, delete and list single events (spec 2.2)."""

    async def create(self, data: ApiRequestData) -> ApiRequest: ...

    async def get(self, request_id: int) -> ApiRequest:
        """Raises NotFound for an unknown id."""
        ...

    async def replace(self, request_id: int, *, data: ApiRequestData) -> ApiRequest: ...

    async def update(self, request_id: int, *, changes: Mapping[str, Any]) -> ApiRequest:
        """Change only the given (already validated) fields."""
        ...

    async def delete(self, request_id: int) -> None: ...

    async def list(self, query: ListQuery) -> Page:
        """Raises InvalidPage for a page past the end (page 1 of nothing is an empty page)."""
        ...


class IngestPort(Protocol):
    """Bulk writes: all events of one call are stored atomically, or none are."""

    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        """Store every event of `batch` in one transaction, written `batch_size` rows at a time.

        Returns the number of events stored.
        """
        ...


class AnalyticsPort(Protocol):
    """Rollups, KPIs and top endpoints; exact figures whichever source serves them."""

    async def hourly(self, query: RollupQuery) -> list[HourlyRow]: ...

    async def daily(self, query: RollupQuery) -> list[DailyRow]: ...

    async def kpis(self, query: KpiQuery) -> KpiSummary: ...

    async def top_endpoints(self, query: TopQuery) -> TopEndpoints: ...

    async def refresh(
        self,
        granularity: Literal["hourly", "daily"],
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> RefreshResult: ...


class StatusPort(Protocol):
    """Reachability of the storage and the backend in use."""

    backend: str

    async def probe(self) -> None:
        """Raises StorageUnavailable with the reason when the database does not answer."""
        ...


__all__ = [
    "AnalyticsPort",
    "Granularity",
    "IngestPort",
    "RecordPort",
    "StatusPort",
]
