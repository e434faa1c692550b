"""Optional API keys: ingest keys for writes, read keys for reads.

A request presents its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Writes
(POST, PUT, PATCH, DELETE) need one of the ingest keys when any is configured; reads (GET, HEAD,
OPTIONS) need one of the read keys when any is configured. The two sets are separate on
purpose: collectors spread over many hosts hold an ingest key, and a leaked one must not expose
the stored data. Handlers whose `opt` says `public` (health, the OpenAPI document) stay open.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key,
so neither the position of a matching key nor the length of a wrong one changes the work
done. Keys are never logged and never echoed in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

PUBLIC = "public"
"""`opt` key: a handler (or a router or controller) marked `{PUBLIC: True}` needs no key."""

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REALM = 'Bearer realm="apm"'


def _digest(key: str | bytes) -> bytes:
    raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class ApiKeys:
    """Digests of the configured keys; an empty side is open."""

    ingest: tuple[bytes, ...] = field(default=(), repr=False)
    read: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def from_keys(cls, *, ingest: Iterable[str] = (), read: Iterable[str] = ()) -> ApiKeys:
        return cls(
            ingest=tuple(_digest(key) for key in ingest),
            read=tuple(_digest(key) for key in read),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.ingest or self.read)


def presented_key(connection: ASGIConnection) -> str | None:
    """The key in `Authorization: Bearer ...` or `X-API-Key`; None when neither is sent."""
    authorization = connection.headers.get("authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = connection.headers.get("x-api-key", "").strip()
    return api_key or None


def matches(key: str, allowed: tuple[bytes, ...]) -> bool:
    """Constant-time membership: every allowed digest is compared, whatever matched before."""
    candidate = _digest(key)
    found = False
    for digest in allowed:
        found |= hmac.compare_digest(candidate, digest)
    return found


class ApiKeyGuard:
    """Litestar guard enforcing `keys` (installed once, on the app)."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def __call__(self, connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        if handler.opt.get(PUBLIC):
            return
        method = connection.scope.get("method", "GET")
        reading = method in _READ_METHODS
        allowed = self._keys.read if reading else self._keys.ingest
        if not allowed:
            return
        key = presented_key(connection)
        if key is None:
            raise NotAuthorizedException(
                detail=f"Authentication required: send {'a read' if reading else 'an ingest'} "
                "key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
                headers={"WWW-Authenticate": _REALM},
            )
        if not matches(key, allowed):
            raise NotAuthorizedException(
                detail=f"Invalid API key for {'reading' if reading else 'writing'}.",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_access_warning(keys: ApiKeys, *, host: str) -> str | None:
    """What stays open to the network when the server binds beyond loopback without keys."""
    if is_loopback(host):
        return None
    open_sides = [
        side for side, digests in (("writes", keys.ingest), ("reads", keys.read)) if not digests
    ]
    if not open_sides:
        return None
    return (
        f"Listening on {host} with {' and '.join(open_sides)} open to anyone who can reach it: "
        "set APM_INGEST_KEYS / APM_READ_KEYS (or their _FILE variants) to require API keys."
    )


_SCHEME_TEXT = (
    "Ingest keys (APM_INGEST_KEYS) allow POST, PUT, PATCH and DELETE; read keys "
    "(APM_READ_KEYS) allow GET. A side without configured keys is open."
)


def openapi_security(keys: ApiKeys) -> tuple[Components, list[SecurityRequirement] | None]:
    """The OpenAPI components and global requirement that describe `keys` (none when off).

    When only one side has keys the requirement also lists `{}` (anonymous), since the
    other side's operations need nothing.
    """
    if not keys.enabled:
        return Components(), None
    schemes = {
        "bearerKey": SecurityScheme(type="http", scheme="bearer", description=_SCHEME_TEXT),
        "headerKey": SecurityScheme(
            type="apiKey", name="X-API-Key", security_scheme_in="header",
            description=_SCHEME_TEXT,
        ),
    }
    requirement: list[SecurityRequirement] = [{"bearerKey": []}, {"headerKey": []}]
    if not (keys.ingest and keys.read):
        requirement.append({})
    return Components(security_schemes=schemes), requirement
