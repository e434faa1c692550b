"""A real PostgreSQL for the test session.

Order of preference: APM_TEST_DATABASE_URL; a testcontainers PostgreSQL when a Docker engine
answers; otherwise the embedded PostgreSQL (no services needed on the machine).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        return bool(client.ping())
    except Exception:
        return False


@contextmanager
def postgres_server() -> Iterator[tuple[str, object | None]]:
    """Yields (server url, embedded handle or None)."""
    url = os.environ.get("APM_TEST_DATABASE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1), None
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver="asyncpg") as container:
            yield container.get_connection_url(), None
        return
    from apm.adapters.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="apm-test-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        try:
            yield server.url, server
        finally:
            server.close()


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


async def create_database(url: str) -> tuple[str, str]:
    name = f"apm_test_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(url, name), name


async def drop_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
