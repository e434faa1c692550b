"""Driver errors become the domain's StorageUnavailable here, and only here.

A database that is down, unreachable, overloaded, restarting, too slow or refusing our
credentials is an outage to the caller (503, retry later), never a 500 with a traceback. Errors
that mean a bug in our SQL (syntax, undefined column, constraint violations) stay what they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from sqlalchemy import exc as sa_exc

from apm.domain.errors import StorageUnavailable

_P = ParamSpec("_P")
_R = TypeVar("_R")

# SQLSTATE classes (and single codes) that mean "the server cannot serve this now":
# 08 connection exception, 28 invalid authorization (credentials rotated or revoked),
# 3D invalid catalog (the database was dropped or renamed), 40 transaction rollback
# (deadlock or serialization failure: the same request succeeds when retried),
# 53 insufficient resources (too many connections, disk full), 57 operator intervention
# (admin shutdown, crash recovery, statement_timeout), 58 system error,
# 55P03 lock not available (lock_timeout), 25P03 idle-in-transaction timeout.
_UNAVAILABLE_CLASSES = ("08", "28", "3D", "40", "53", "57", "58")
_UNAVAILABLE_CODES = ("55P03", "25P03")
# Raised by asyncpg without a SQLSTATE when the socket is gone or the server is not ready.
_UNAVAILABLE_NAMES = ("ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError")
_TIMEOUTS = (asyncio.TimeoutError, TimeoutError, sa_exc.TimeoutError)
_OUTAGES = (OSError, *_TIMEOUTS)


def _cause(error: BaseException) -> BaseException:
    return getattr(error, "orig", None) or error


def _sqlstate(error: BaseException) -> str:
    orig = _cause(error)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


def is_unavailable(error: BaseException) -> bool:
    """True when `error` means the database cannot serve now (as opposed to a bug in a query)."""
    cause = _cause(error)
    if isinstance(error, _OUTAGES) or isinstance(cause, _OUTAGES):
        return True
    if isinstance(error, sa_exc.DBAPIError) and (
        error.connection_invalidated
        or isinstance(error, sa_exc.InterfaceError | sa_exc.OperationalError)
    ):
        return True
    if type(cause).__name__ in _UNAVAILABLE_NAMES:
        return True
    state = _sqlstate(error)
    return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_CODES


def reason(error: BaseException) -> str:
    """A one-line reason for logs and the health answer; never a query or its parameters."""
    cause = _cause(error)
    if isinstance(cause, _TIMEOUTS) or isinstance(error, _TIMEOUTS):
        return "the database did not answer in time"
    if isinstance(cause, OSError):
        return f"cannot connect to the database: {cause.strerror or type(cause).__name__}"
    text = str(cause).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    state = _sqlstate(error)
    return (f"{first} (SQLSTATE {state})" if state else first)[:200]


@asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as error:
        if is_unavailable(error):
            raise StorageUnavailable(reason(error)) from error
        raise


def translating(method: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Decorate a port method so that driver outages surface as StorageUnavailable."""

    @wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with storage_errors():
            return await method(*args, **kwargs)

    return wrapper
