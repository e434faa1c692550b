"""Which driver errors are outages (503) and which are bugs (left alone): no database needed."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from apm.adapters.errors import is_unavailable, reason, storage_errors, translating
from apm.domain.errors import StorageUnavailable


def wrapped(error: Exception, kind: type[sa_exc.DBAPIError] = sa_exc.DBAPIError) -> Exception:
    """As SQLAlchemy hands a driver error up: the driver's exception is `orig`."""
    return kind("SELECT 1", {}, error)


OUTAGES = [
    ConnectionRefusedError(111, "Connection refused"),
    FileNotFoundError(2, "No such file or directory"),
    socket.gaierror(-2, "Name or service not known"),
    TimeoutError(),
    TimeoutError(),
    sa_exc.TimeoutError("QueuePool limit reached"),
    wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
    wrapped(asyncpg.exceptions.QueryCanceledError("canceling statement due to timeout")),
    wrapped(asyncpg.exceptions.TooManyConnectionsError("too many clients")),
    wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")),
    wrapped(asyncpg.exceptions.InvalidPasswordError("password authentication failed")),
    wrapped(asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist')),
    wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")),
    wrapped(asyncpg.exceptions.SerializationError("could not serialize access")),
    wrapped(asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout")),
    wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
    wrapped(ConnectionResetError(104, "Connection reset by peer")),
    wrapped(asyncpg.exceptions.InterfaceError("connection is closed"), sa_exc.InterfaceError),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
]

BUGS = [
    wrapped(asyncpg.exceptions.UndefinedTableError('relation "x" does not exist')),
    wrapped(asyncpg.exceptions.UndefinedColumnError('column "x" does not exist')),
    wrapped(asyncpg.exceptions.PostgresSyntaxError("syntax error")),
    wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")),
    wrapped(asyncpg.exceptions.NumericValueOutOfRangeError("smallint out of range")),
    ValueError("not a database error"),
    KeyError("row"),
]


@pytest.mark.parametrize("error", OUTAGES, ids=lambda e: type(getattr(e, "orig", e)).__name__)
def test_outages_are_unavailable(error: Exception) -> None:
    assert is_unavailable(error)
    text = reason(error)
    assert text and "\n" not in text and len(text) <= 200


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(getattr(e, "orig", e)).__name__)
def test_bugs_are_not_hidden_as_outages(error: Exception) -> None:
    assert not is_unavailable(error)


def test_reasons_are_readable() -> None:
    assert reason(TimeoutError()) == "the database did not answer in time"
    assert reason(FileNotFoundError(2, "No such file or directory")) == (
        "cannot connect to the database: No such file or directory"
    )
    deadlock = wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert reason(deadlock) == "deadlock detected (SQLSTATE 40P01)"


async def test_translating_maps_outages_and_passes_bugs_through() -> None:
    @translating
    async def fails(error: Exception) -> None:
        raise error

    with pytest.raises(StorageUnavailable) as caught:
        await fails(ConnectionRefusedError(111, "Connection refused"))
    assert caught.value.detail == "Database unavailable."
    assert "Connection refused" in caught.value.reason
    with pytest.raises(sa_exc.DBAPIError):
        await fails(BUGS[0])
    with pytest.raises(StorageUnavailable):
        async with storage_errors():
            raise StorageUnavailable("already translated")
