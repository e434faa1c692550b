"""Engine and session factory, built once by the composition root."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def build_engine(
    url: str,
    *,
    pool_size: int = 10,
    connect_timeout: float = 5.0,
    statement_timeout_ms: int = 30_000,
    max_overflow: int = 5,
    sslmode: str | None = None,
) -> AsyncEngine:
    """An asyncpg engine whose failures are quick: bounded connect and statement time."""
    connect_args: dict[str, object] = {
        "timeout": connect_timeout,
        # asyncpg's own deadline for a statement, a little after the server's, so that a
        # vanished server cannot hang a request either.
        "command_timeout": statement_timeout_ms / 1000 + 5 if statement_timeout_ms else None,
        "server_settings": {"application_name": "apm", "TimeZone": "UTC"},
    }
    if statement_timeout_ms:
        connect_args["server_settings"]["statement_timeout"] = str(statement_timeout_ms)  # type: ignore[index]
    if sslmode:
        connect_args["ssl"] = sslmode
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=connect_timeout + 5,
        # Check connections before use so the pool recovers by itself after an outage.
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
