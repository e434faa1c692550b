"""A batch of validated events, column by column (the shape the database write wants)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class EventBatch(msgspec.Struct, kw_only=True):
    """Parallel columns of valid events; `tags` holds each event's tags as JSON object text.

    Times are aware UTC; latencies are milliseconds.
    """

    time: list[datetime] = msgspec.field(default_factory=list)
    service: list[str] = msgspec.field(default_factory=list)
    endpoint: list[str] = msgspec.field(default_factory=list)
    method: list[str] = msgspec.field(default_factory=list)
    status_code: list[int] = msgspec.field(default_factory=list)
    latency_ms: list[int] = msgspec.field(default_factory=list)
    trace_id: list[str | None] = msgspec.field(default_factory=list)
    user_ref: list[str | None] = msgspec.field(default_factory=list)
    tags: list[str] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.time)
