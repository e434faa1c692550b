"""Bulk ingest on TimescaleDB: the PostgreSQL write, then a refresh of the buckets it touched."""

from __future__ import annotations

from apm.adapters.timescale.refresher import AggregateRefresher
from apm.domain.ingest import EventBatch
from apm.domain.ports import IngestPort


class TimescaleIngest:
    def __init__(self, ingest: IngestPort, *, refresher: AggregateRefresher) -> None:
        self._ingest = ingest
        self._refresher = refresher

    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        stored = await self._ingest.store(batch, batch_size=batch_size)
        # Only after the commit: a refresh that ran before it would not see the events.
        if stored:
            self._refresher.touched(min(batch.time), max(batch.time))
        return stored
