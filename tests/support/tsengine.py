"""A TimescaleDB engine for tests, without Docker or a system PostgreSQL.

``tests/tsengine/server.mjs`` runs PostgreSQL 17 + TimescaleDB compiled to WASM
(PGlite) inside Node.js and speaks the PostgreSQL wire protocol on a local TCP
port, so asyncpg and SQLAlchemy connect to it like to a real server::

    with start_timescale_engine() as engine:
        sa_engine = create_async_engine(engine.url, pool_size=1, max_overflow=0)

The engine is ONE database session shared by all connections: clients are
served one transaction at a time, so code that keeps a transaction open on one
connection while waiting for another connection deadlocks. ``pool_size=1`` is
the natural setting. ``COPY ... FROM STDIN`` fails with SQLSTATE 0A000.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

ENGINE_DIR = Path(__file__).resolve().parent.parent / "tsengine"
# Inside node_modules, so deleting node_modules also invalidates it.
_STAMP = ENGINE_DIR / "node_modules" / ".tsengine-install.sha256"
_NPM_TIMEOUT = 600


class TimescaleEngineError(RuntimeError):
    """The engine could not be installed or started."""


class TimescaleEngine:
    """A running ``server.mjs`` process. Stop it with :meth:`stop` or ``with``."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int) -> None:
        self.process = process
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """SQLAlchemy URL (asyncpg driver)."""
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """libpq-style DSN, e.g. for ``asyncpg.connect``."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10) -> None:
        """Terminate the server process (by PID) and wait for it. Idempotent."""
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()

    def __enter__(self) -> TimescaleEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json", ".npmrc"):
        path = ENGINE_DIR / name
        digest.update(name.encode() + b"\0")
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _find_executable(name: str, what: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise TimescaleEngineError(
            f"{what} is required for the TimescaleDB test engine, but {name!r} was not found "
            "on PATH. Install Node.js 18 or newer (it ships npm)."
        )
    return found


def ensure_node_modules(*, node: str = "node") -> None:
    """Run ``npm ci`` in tests/tsengine unless node_modules matches package-lock.json."""
    wanted = _install_fingerprint()
    if _STAMP.exists() and _STAMP.read_text().strip() == wanted:
        return
    node_path = _find_executable(node, "Node.js")
    # Prefer the npm that sits next to the chosen node.
    npm = shutil.which("npm", path=str(Path(node_path).parent)) or _find_executable("npm", "npm")
    # Parallel test processes (e.g. pytest-xdist) must not install at once.
    lock_name = "apm-tsengine-" + hashlib.sha256(str(ENGINE_DIR).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"{lock_name}.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock
            pass
        if _STAMP.exists() and _STAMP.read_text().strip() == wanted:
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=ENGINE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT,
        )
        if result.returncode != 0:
            raise TimescaleEngineError(
                f"npm ci in {ENGINE_DIR} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        _STAMP.write_text(wanted + "\n")


def _pump_lines(stream, sink: queue.Queue[str | None] | None, tail: collections.deque[str]) -> None:
    # Keeps reading for the process's whole life so a full pipe never blocks it.
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        tail.append(line)
        if sink is not None:
            sink.put(line)
    if sink is not None:
        sink.put(None)  # EOF


def start_timescale_engine(
    *,
    node: str = "node",
    timeout: float = 60,
    data_dir: str | os.PathLike[str] | None = None,
) -> TimescaleEngine:
    """Install (if needed) and start the engine on a free local port.

    Returns once the server printed its READY line; raises
    :class:`TimescaleEngineError` if it exits or does not get ready within
    ``timeout`` seconds (``npm ci`` time is not counted). ``data_dir`` keeps the
    database on disk; by default it lives in memory and vanishes on stop.
    """
    node_path = _find_executable(node, "Node.js")
    ensure_node_modules(node=node_path)
    cmd = [node_path, "server.mjs", "--port", "0", "--host", "127.0.0.1"]
    if data_dir is not None:
        cmd += ["--data-dir", os.fspath(Path(data_dir).resolve())]
    # stdin stays open: the server exits when it closes, i.e. when we die.
    proc = subprocess.Popen(
        cmd,
        cwd=ENGINE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    out_tail: collections.deque[str] = collections.deque(maxlen=50)
    err_tail: collections.deque[str] = collections.deque(maxlen=50)
    for stream, sink, tail in ((proc.stdout, lines, out_tail), (proc.stderr, None, err_tail)):
        threading.Thread(target=_pump_lines, args=(stream, sink, tail), daemon=True).start()
    engine = TimescaleEngine(proc, "127.0.0.1", 0)

    def failure(reason: str) -> TimescaleEngineError:
        engine.stop()
        time.sleep(0.05)  # let the reader threads collect the last lines
        output = "\n".join([*out_tail, *err_tail])
        return TimescaleEngineError(f"TimescaleDB engine {reason}.\n{output}".rstrip())

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise failure(f"was not ready within {timeout:g} s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            raise failure(f"exited with code {proc.wait()} before it was ready")
        if line.startswith("READY "):
            _, host, port = line.split()
            engine.host, engine.port = host, int(port)
            atexit.register(engine.stop)
            return engine


@contextmanager
def timescale_server() -> Iterator[tuple[str, TimescaleEngine | None]]:
    """A TimescaleDB server for the test session: yields (SQLAlchemy URL, engine or None).

    Order of preference: APM_TEST_TIMESCALE_URL; a testcontainers TimescaleDB when a Docker
    engine answers; otherwise the npm engine above. The engine (the last case) is one database
    that cannot create others; the servers of the first two can (tests use fresh databases).
    """
    url = os.environ.get("APM_TEST_TIMESCALE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1), None
        return
    from tests.support.postgres import docker_answers

    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("timescale/timescaledb:latest-pg17", driver="asyncpg") as container:
            yield container.get_connection_url(), None
        return
    with start_timescale_engine() as engine:
        yield engine.url, engine


if __name__ == "__main__":
    # `python -m tests.support.tsengine`: install the engine's npm packages (make test).
    ensure_node_modules()
