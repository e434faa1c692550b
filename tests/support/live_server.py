"""A real `apm serve` process on a free loopback port, for tests that need a live server.

    with live_server(database_url, env={"APM_READ_KEYS": "..."}) as server:
        httpx.get(server.url("/api/health/"))

The server runs in its own process (its own event loop, pool and signal handling, exactly as in
production) and is stopped by its PID: SIGTERM, then SIGKILL if it does not exit in time. Its
stderr goes to a file whose tail is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None


class ServerFailedToStart(RuntimeError):
    pass


def _wait_ready(server: LiveServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerFailedToStart(
                f"apm serve exited with {server.process.returncode}:\n{server.log()[-4000:]}"
            )
        try:
            if httpx.get(server.url("/api/health/"), timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServerFailedToStart(f"apm serve did not answer in time:\n{server.log()[-4000:]}")


def stop(server: LiveServer, *, grace: float = 15.0) -> None:
    """SIGTERM the server's PID; SIGKILL it when it has not exited after `grace` seconds."""
    if not server.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=grace)


@contextlib.contextmanager
def live_server(
    database_url: str,
    *,
    env: Mapping[str, str] | None = None,
    migrate: bool = False,
    workers: int = 1,
    startup_timeout: float = 60.0,
) -> Iterator[LiveServer]:
    """Serve the API against `database_url` (already migrated unless `migrate`) until exit."""
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="apm-live-"))
    log_path = log_dir / "server.log"
    child_env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("APM_", "POSTGRES_", "DRF_", "DB_SSLMODE"))
    }
    child_env.update(
        {
            "APM_DATABASE_URL": database_url,
            "APM_LOG_FORMAT": "json",
            "APM_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    child_env.update(env or {})
    command = [
        sys.executable, "-m", "apm.cli", "serve",
        "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]
    if not migrate:
        command.append("--no-migrate")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=child_env, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = LiveServer(process=process, port=port, log_path=log_path)
    try:
        _wait_ready(server, time.monotonic() + startup_timeout)
        yield server
    finally:
        stop(server)
