"""`make smoke` inside the test suite: the Postman collection against a real `apm serve`.

The script starts the server on a throw-away embedded PostgreSQL (or on the TimescaleDB test
engine), runs newman (installed from postman/package-lock.json on first use) and stops the
server by its PID whatever happens.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_smoke(**env: str) -> None:
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "smoke.sh")],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "APM": str(bin_dir / "apm"), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    # On failure show newman's failure list (which assertion, which request), then the rest.
    failures = output.find("#  failure")
    assert result.returncode == 0, (output[failures:] if failures >= 0 else output)[:12000]
    assert "smoke: passed" in output
    # newman's summary: every assertion ran and none failed.
    summary = [line for line in output.splitlines() if "assertions" in line]
    assert summary and summary[-1].split("│")[-2].strip() == "0", summary


def test_postman_collection_passes_against_a_live_server() -> None:
    run_smoke()


def test_postman_collection_passes_on_timescaledb(ts_url: str) -> None:
    # The same collection, exact figures included, served from the continuous aggregates.
    # The test engine serves one connection at a time (tests/conftest.py).
    run_smoke(
        SMOKE_DATABASE_URL=ts_url,
        APM_BACKEND="timescale",
        APM_DB_POOL_SIZE="1",
        APM_DB_MAX_OVERFLOW="0",
        APM_INGEST_WRITE="unnest",
    )
