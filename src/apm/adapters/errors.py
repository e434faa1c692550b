"""Driver errors become the domain's StorageUnavailable here, and only here."""

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

# SQLSTATE classes that mean "the server is not there or cannot serve now":
# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (admin shutdown, query canceled by statement_timeout), 58 system error.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


def _sqlstate(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError | asyncio.TimeoutError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.InterfaceError | sa_exc.OperationalError):
            return True
        cause = error.orig
        if isinstance(cause, OSError | TimeoutError | asyncio.TimeoutError):
            return True
    name = type(getattr(error, "orig", None) or error).__name__
    if name in ("ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError"):
        return True
    return _sqlstate(error)[:2] in _UNAVAILABLE_CLASSES


def _reason(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return text[:200]


@asynccontextmanager
async def storage_errors() -> AsyncIterator[None]:
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as error:
        if is_unavailable(error):
            raise StorageUnavailable(_reason(error)) from error
        raise


def translating(method: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Decorate a port method so that driver outages surface as StorageUnavailable."""

    @wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with storage_errors():
            return await method(*args, **kwargs)

    return wrapper
