"""The stored entity: one API request event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# Columns a list may be ordered by; anything else is rejected before SQL is built.
ORDERING_FIELDS = ("time", "latency_ms", "status_code", "service", "endpoint", "method")

REQUIRED_FIELDS = ("time", "service", "endpoint", "method", "status_code", "latency_ms")
OPTIONAL_FIELDS = ("trace_id", "user_ref", "tags")
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


class ApiRequestData(msgspec.Struct, frozen=True, kw_only=True):
    """A validated event before it is stored. `time` is aware UTC, latency in ms."""

    time: datetime
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: int
    trace_id: str | None = None
    user_ref: str | None = None
    tags: dict[str, Any] = msgspec.field(default_factory=dict)


class ApiRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event, as read back (and rendered on the wire)."""

    id: int
    time: datetime
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: int
    trace_id: str | None
    user_ref: str | None
    tags: dict[str, Any]
