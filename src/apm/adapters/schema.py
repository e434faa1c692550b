"""The events table as SQLAlchemy Core metadata, for statements with optional filters.

The table itself is created by Alembic migrations; this mirrors its columns.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, SmallInteger, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

api_requests = Table(
    "api_requests",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("service", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("status_code", SmallInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("trace_id", Text),
    Column("user_ref", Text),
    Column("tags", JSONB, nullable=False),
)

RECORD_COLUMNS = (
    "id", "time", "service", "endpoint", "method", "status_code",
    "latency_ms", "trace_id", "user_ref", "tags",
)
