"""Settings: read once from the environment into a frozen object.

Nothing here runs at import time; `Settings.from_env()` is called by the CLI (or a test) and the
result is passed to `create_app(settings)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import quote

import msgspec

Backend = Literal["auto", "timescale", "postgres"]
LogFormat = Literal["auto", "json", "console"]
WriteStrategy = Literal["auto", "copy", "unnest"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_T = TypeVar("_T")


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """SQLAlchemy URL (postgresql+asyncpg://...). None = start the embedded PostgreSQL."""
    db_sslmode: str | None = None
    backend: Backend = "auto"
    page_size: int = 50
    ingest_batch_size: int = 1000
    ingest_max_events: int = 50_000
    ingest_max_errors: int = 25
    ingest_write: WriteStrategy = "auto"
    max_body_bytes: int = 32 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: LogFormat = "auto"
    data_dir: Path = Path(".apm")
    db_pool_size: int = 10
    db_max_overflow: int = 5
    db_connect_timeout: float = 5.0
    db_statement_timeout_ms: int = 30_000
    refresh_delay: float = 1.0
    ingest_keys: tuple[str, ...] = ()
    """API keys that allow writes (POST/PUT/PATCH/DELETE); empty = writes are open."""
    read_keys: tuple[str, ...] = ()
    """API keys that allow reads (GET); empty = reads are open."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        return cls(
            database_url=_database_url(env),
            db_sslmode=reader.choice("DB_SSLMODE", _SSL_MODES, None),
            backend=reader.choice("APM_BACKEND", ("auto", "timescale", "postgres"), "auto"),
            page_size=reader.integer(
                "APM_PAGE_SIZE", reader.integer("DRF_PAGE_SIZE", 50, 1, 1000), 1, 1000
            ),
            ingest_batch_size=reader.integer("APM_INGEST_BATCH_SIZE", 1000, 1, 1_000_000),
            ingest_max_events=reader.integer("APM_INGEST_MAX_EVENTS", 50_000, 1, 1_000_000),
            ingest_max_errors=reader.integer("APM_INGEST_MAX_ERRORS", 25, 0, 100_000),
            ingest_write=reader.choice("APM_INGEST_WRITE", ("auto", "copy", "unnest"), "auto"),
            max_body_bytes=reader.integer(
                "APM_MAX_BODY_BYTES", 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024
            ),
            host=reader.text("APM_HOST", "127.0.0.1"),
            port=reader.integer("APM_PORT", 8000, 0, 65535),
            log_level=reader.choice("APM_LOG_LEVEL", _LOG_LEVELS, "INFO", upper=True),
            log_format=reader.choice("APM_LOG_FORMAT", ("auto", "json", "console"), "auto"),
            data_dir=Path(reader.text("APM_DATA_DIR", ".apm")),
            db_pool_size=reader.integer("APM_DB_POOL_SIZE", 10, 1, 200),
            db_max_overflow=reader.integer("APM_DB_MAX_OVERFLOW", 5, 0, 200),
            db_connect_timeout=reader.number("APM_DB_CONNECT_TIMEOUT", 5.0, 0.1, 300.0),
            db_statement_timeout_ms=reader.integer(
                "APM_DB_STATEMENT_TIMEOUT_MS", 30_000, 0, 86_400_000
            ),
            refresh_delay=reader.number("APM_REFRESH_DELAY", 1.0, 0.0, 4.0),
            ingest_keys=api_keys(env, "APM_INGEST_KEYS"),
            read_keys=api_keys(env, "APM_READ_KEYS"),
        )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def _parse(
        self, name: str, default: _T, convert: Callable[[str], _T], low: _T, high: _T, kind: str
    ) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = convert(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {kind}, got {raw!r}.") from None
        if not low <= value <= high:  # type: ignore[operator]
            raise SettingsError(f"{name} must be between {low} and {high}, got {raw!r}.")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self._parse(name, default, int, low, high, "a whole number")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._parse(name, default, float, low, high, "a number")

    def choice(
        self, name: str, allowed: tuple[str, ...], default: _T, *, upper: bool = False
    ) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}.")
        return value  # type: ignore[return-value]


MIN_KEY_LENGTH = 16
_KEY_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)


def api_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Keys from `name` (comma-separated) or from the file named by `name`_FILE (one per line,
    blank lines and `#` comments ignored). Messages name the variable, never a key."""
    inline = (env.get(name) or "").strip()
    path = (env.get(f"{name}_FILE") or "").strip()
    if inline and path:
        raise SettingsError(f"Set {name} or {name}_FILE, not both.")
    source = name
    if path:
        source = f"{name}_FILE"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"{source}: cannot read {path!r} ({error}).") from None
        lines = (line.strip() for line in text.splitlines())
        keys = [line for line in lines if line and not line.startswith("#")]
        if not keys:
            raise SettingsError(f"{source}: {path!r} holds no key.")
    else:
        keys = [part.strip() for part in inline.split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_LENGTH or not set(key) <= _KEY_CHARACTERS:
            raise SettingsError(
                f"{source}: key #{position} must be at least {MIN_KEY_LENGTH} characters of "
                "A-Z a-z 0-9 - . _ ~ + / = (for example the output of `openssl rand -hex 32`)."
            )
    return tuple(dict.fromkeys(keys))


def _database_url(env: Mapping[str, str]) -> str | None:
    """APM_DATABASE_URL wins; else the POSTGRES_* variables when POSTGRES_HOST is set."""
    url = (env.get("APM_DATABASE_URL") or "").strip()
    if url:
        return normalize_database_url(url)
    host = (env.get("POSTGRES_HOST") or "").strip()
    if not host:
        return None
    port = (env.get("POSTGRES_PORT") or "5432").strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"POSTGRES_PORT must be a TCP port number, got {port!r}.")
    user = quote(env.get("POSTGRES_USER") or "postgres", safe="")
    password = env.get("POSTGRES_PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}" if password else user
    name = quote(env.get("POSTGRES_DB") or "postgres", safe="")
    return f"postgresql+asyncpg://{auth}@{host}:{port}/{name}"


def normalize_database_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+asyncpg:// spellings."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise SettingsError(
            "APM_DATABASE_URL must start with postgresql:// or postgresql+asyncpg://, "
            f"got {scheme + sep!r}."
        )
    return f"postgresql+asyncpg://{rest}"
