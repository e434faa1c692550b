"""Every SQL statement of the plain-PostgreSQL backend.

Fixed shapes are `text()` with bound parameters; statements with optional filters are built
with SQLAlchemy Core from allow-listed columns only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, and_, asc, desc, func, or_, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from apm.adapters.schema import api_requests
from apm.domain.listing import ListQuery

# Reads nothing; answers one row (1) when the server is there.
PROBE = text("SELECT 1")

# Writes one event; returns the stored row (all record columns).
INSERT_RECORD = text(
    """
    INSERT INTO api_requests
        (time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags)
    VALUES
        (:time, :service, :endpoint, :method, :status_code, :latency_ms,
         :trace_id, :user_ref, CAST(:tags AS jsonb))
    RETURNING id, time, service, endpoint, method, status_code, latency_ms,
              trace_id, user_ref, tags
    """
)

# Reads one event by id; zero or one row of all record columns.
SELECT_RECORD = text(
    """
    SELECT id, time, service, endpoint, method, status_code, latency_ms,
           trace_id, user_ref, tags
    FROM api_requests
    WHERE id = :id
    """
)

# Reads and locks one event by id; zero or one row of all record columns.
SELECT_RECORD_FOR_UPDATE = text(
    """
    SELECT id, time, service, endpoint, method, status_code, latency_ms,
           trace_id, user_ref, tags
    FROM api_requests
    WHERE id = :id
    FOR UPDATE
    """
)

# Deletes one event by id; returns the deleted row, all record columns (zero or one row).
DELETE_RECORD = text(
    """
    DELETE FROM api_requests
    WHERE id = :id
    RETURNING id, time, service, endpoint, method, status_code, latency_ms,
              trace_id, user_ref, tags
    """
)

# Writes many events from parallel arrays in one statement; returns nothing.
INSERT_UNNEST = text(
    """
    INSERT INTO api_requests
        (time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags)
    SELECT *
    FROM unnest(
        CAST(:time AS timestamptz[]),
        CAST(:service AS text[]),
        CAST(:endpoint AS text[]),
        CAST(:method AS text[]),
        CAST(:status_code AS smallint[]),
        CAST(:latency_ms AS integer[]),
        CAST(:trace_id AS text[]),
        CAST(:user_ref AS text[]),
        CAST(:tags AS jsonb[])
    )
    """
)

# Bulk ingest by binary COPY. asyncpg's copy_records_to_table builds the statement from these
# names:  COPY api_requests (time, service, ..., tags) FROM STDIN (FORMAT binary)
# Rows are tuples in INGEST_COLUMNS order; it returns the command tag ('COPY n').
INGEST_TABLE = "api_requests"
INGEST_COLUMNS = (
    "time", "service", "endpoint", "method", "status_code",
    "latency_ms", "trace_id", "user_ref", "tags",
)

# Reads nothing; one row (1). COPY goes to the driver connection directly, around SQLAlchemy,
# whose driver adapter only opens the transaction on its first statement: this is that
# statement, so the COPY and everything after it share one transaction.
OPEN_INGEST_TRANSACTION = text("SELECT 1")

_RETURNING = (
    api_requests.c.id, api_requests.c.time, api_requests.c.service, api_requests.c.endpoint,
    api_requests.c.method, api_requests.c.status_code, api_requests.c.latency_ms,
    api_requests.c.trace_id, api_requests.c.user_ref, api_requests.c.tags,
)

_SEARCHED = (
    api_requests.c.service, api_requests.c.endpoint,
    api_requests.c.trace_id, api_requests.c.user_ref,
)


def update_record(request_id: int, changes: Mapping[str, Any]):
    """Changes the given columns of one event; returns the updated row (zero or one)."""
    return (
        update(api_requests)
        .where(api_requests.c.id == request_id)
        .values(**changes)
        .returning(*_RETURNING)
    )


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _list_filters(query: ListQuery) -> list[ColumnElement[bool]]:
    c = api_requests.c
    found: list[ColumnElement[bool]] = []
    for name in ("service", "endpoint", "trace_id", "user_ref", "method"):
        value = getattr(query, name)
        if value is not None:
            found.append(c[name] == value)
    if query.status_codes:
        found.append(c.status_code.in_(query.status_codes))
    if query.time_after is not None:
        found.append(c.time >= query.time_after)
    if query.time_before is not None:
        bound = c.time < query.time_before if query.time_before_exclusive else (
            c.time <= query.time_before
        )
        found.append(bound)
    if query.latency_min is not None:
        found.append(c.latency_ms >= query.latency_min)
    if query.latency_max is not None:
        found.append(c.latency_ms <= query.latency_max)
    for term in query.search_terms:
        pattern = f"%{_escape_like(term)}%"
        found.append(or_(*(column.ilike(pattern, escape="\\") for column in _SEARCHED)))
    return found


def count_records(query: ListQuery) -> Select:
    """Reads api_requests; one row: the number of events matching the filters."""
    return select(func.count()).select_from(api_requests).where(and_(True, *_list_filters(query)))


def list_records(query: ListQuery) -> Select:
    """Reads api_requests; one page of events (all record columns) in the asked order.

    The id breaks ties so that pages never overlap or skip rows.
    """
    order = [
        desc(api_requests.c[key.field]) if key.descending else asc(api_requests.c[key.field])
        for key in query.ordering
    ]
    order.append(desc(api_requests.c.id))
    return (
        select(*_RETURNING)
        .where(and_(True, *_list_filters(query)))
        .order_by(*order)
        .limit(query.page_size)
        .offset((query.page - 1) * query.page_size)
    )
