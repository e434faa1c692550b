"""Which ASGI server should `apm serve` run? Uvicorn (uvloop + httptools) against Granian.

Both serve the same app (`apm.app:app_from_env`), one worker process each, on the same
database, under the same load from `wrk` (Debian: `apt-get install wrk`):

    python benchmarks/servers.py                  # embedded PostgreSQL in a temp dir
    APM_DATABASE_URL=postgresql://... python benchmarks/servers.py --duration 15 --rounds 3

Scenarios: GET /api/health/ (the server's own overhead), GET /api/requests/?page_size=50 (a
list: two queries and 50 records rendered) and POST /api/requests/ingest/ with 1000 events
(a 250 KB body decoded, validated and written). Servers alternate within every round (A B, A B,
...) so that drift on the machine hits both alike; the table shows the median of the rounds.
Logging is at WARNING: the per-request line costs both servers the same and would only blur
the difference between them. Every server is stopped by its PID, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HOST = "127.0.0.1"
APP = "apm.app:app_from_env"


def server_commands(port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "uvicorn": [
            python, "-m", "uvicorn", APP, "--factory", "--host", HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--workers", "1",
            "--no-access-log", "--log-level", "warning", "--no-server-header",
        ],
        "granian": [
            python, "-m", "granian", "--interface", "asgi", "--factory", "--host", HOST,
            "--port", str(port), "--loop", "uvloop", "--workers", "1", "--http", "1",
            "--log-level", "warning", "--no-ws", APP,
        ],
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    connections: int


SCENARIOS = (
    Scenario("GET /api/health/", "GET", "/api/health/", 64),
    # Filtered on a seeded service: the ingest runs add rows of another service, so this
    # list's count stays the same from round to round.
    Scenario(
        "GET /api/requests/?service=checkout&page_size=50",
        "GET",
        "/api/requests/?service=checkout&page_size=50",
        16,
    ),
    Scenario("POST /api/requests/ingest/ (1000 events)", "POST", "/api/requests/ingest/", 4),
)


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_ms_per_request: float = float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server: the process and its children (Granian's worker)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def database() -> Iterator[str]:
    """APM_DATABASE_URL, or an embedded PostgreSQL in a temporary directory."""
    from apm.settings import normalize_database_url

    if os.environ.get("APM_DATABASE_URL"):
        yield normalize_database_url(os.environ["APM_DATABASE_URL"])
        return
    from apm.adapters.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="apm-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        try:
            yield server.url
        finally:
            server.close()


async def prepare(url: str, events: int) -> None:
    """Migrate and store `events` seeded events (the list scenario reads them)."""
    import msgspec

    from apm.adapters.migrations import upgrade
    from apm.app import open_storage
    from apm.seeding import generate
    from apm.settings import Settings

    await asyncio.to_thread(upgrade, url)
    storage = await open_storage(msgspec.structs.replace(Settings(), database_url=url))
    try:
        for batch in generate(count=events, days=7, now=datetime.now(UTC), seed=1):
            await storage.ports.ingest.store(batch, batch_size=len(batch))
    finally:
        await storage.close()


def ingest_body(path: Path) -> Path:
    from apm.seeding import generate, to_json

    (batch,) = generate(count=1000, days=1, now=datetime.now(UTC), seed=2, chunk_size=1000)
    batch.service = ["bench-ingest"] * len(batch)
    body = path / "ingest.json"
    body.write_bytes(to_json(batch))
    script = path / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body}", "rb")\n'
        "wrk.body = f:read(\"*a\")\n"
        "f:close()\n"
    )
    return script


@contextmanager
def running(name: str, port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    command = server_commands(port)[name]
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/api/health/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield process.pid
    finally:
        # The server's own process group: a Granian supervisor and its worker go together.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str | None) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text or "")
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def wrk(url: str, connections: int, seconds: int, script: Path | None) -> Result:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return Result(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(percentiles.get("50")),
        p99_ms=_ms(percentiles.get("99")),
        errors=(int(errors.group(1)) if errors else 0)
        + (sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run [10]")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per scenario [3]")
    parser.add_argument("--events", type=int, default=20_000, help="events seeded first [20000]")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    from apm.logs import configure_logging

    configure_logging("WARNING", "console")
    results: dict[tuple[str, str], list[Result]] = {}
    with database() as url, tempfile.TemporaryDirectory(prefix="apm-bench-run-") as tmp:
        asyncio.run(prepare(url, args.events))
        script = ingest_body(Path(tmp))
        env = {
            **os.environ,
            "APM_DATABASE_URL": url,
            "APM_LOG_LEVEL": "WARNING",
            "APM_LOG_FORMAT": "json",
            "APM_INGEST_KEYS": "",
            "APM_READ_KEYS": "",
        }
        for round_number in range(args.rounds):
            order = ("uvicorn", "granian") if round_number % 2 == 0 else ("granian", "uvicorn")
            for name in order:
                port = free_port()
                with running(name, port, env, Path(tmp) / f"{name}.log") as pid:
                    base = f"http://{HOST}:{port}"
                    wrk(base + "/api/health/", 16, 2, None)  # warm-up
                    for scenario in SCENARIOS:
                        cpu_before = cpu_seconds(pid)
                        result = wrk(
                            base + scenario.path,
                            scenario.connections,
                            args.duration,
                            script if scenario.method == "POST" else None,
                        )
                        # CPU time per request barely moves when other work shares the
                        # machine; throughput does. Both are reported.
                        result.cpu_ms_per_request = (
                            (cpu_seconds(pid) - cpu_before) * 1000 / max(result.requests, 1)
                        )
                        results.setdefault((scenario.name, name), []).append(result)
                        print(
                            f"round {round_number + 1} {name:8} {scenario.name:45} "
                            f"{result.requests_per_s:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                            f"p99 {result.p99_ms:7.2f} ms  cpu {result.cpu_ms_per_request:6.3f} "
                            f"ms/req  errors {result.errors}",
                            flush=True,
                        )

    print()
    print(f"median of {args.rounds} rounds, {args.duration} s each, wrk -t1, one worker process")
    print()
    print("| scenario | connections | uvicorn req/s | granian req/s | granian / uvicorn "
          "| uvicorn p50 / p99 ms | granian p50 / p99 ms | server CPU ms/request uvicorn / "
          "granian |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        row = {}
        for name in ("uvicorn", "granian"):
            runs = results[(scenario.name, name)]
            row[name] = (
                statistics.median(r.requests_per_s for r in runs),
                statistics.median(r.p50_ms for r in runs),
                statistics.median(r.p99_ms for r in runs),
                sum(r.errors for r in runs),
                statistics.median(r.cpu_ms_per_request for r in runs),
            )
        uv, gr = row["uvicorn"], row["granian"]
        flag = " (errors!)" if uv[3] or gr[3] else ""
        print(
            f"| {scenario.name}{flag} | {scenario.connections} | {uv[0]:.0f} | {gr[0]:.0f} "
            f"| {gr[0] / uv[0]:.2f} | {uv[1]:.2f} / {uv[2]:.2f} | {gr[1]:.2f} / {gr[2]:.2f} "
            f"| {uv[4]:.3f} / {gr[4]:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
