"""APM_TEST_REQUIRE_TIMESCALE=1 (set by CI) turns a skipped TimescaleDB test into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = '''
import pytest

@pytest.mark.timescale
def test_needs_timescale():
    pytest.skip("no TimescaleDB here")

def test_other_skip():
    pytest.skip("unrelated")
'''


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    environ = {k: v for k, v in os.environ.items() if k != "APM_TEST_REQUIRE_TIMESCALE"}
    # The suite's conftest as a plugin: its hooks, without collecting the suite.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "-rfs", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         str(probe)],
        cwd=ROOT, env={**environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_skips_stay_skips_by_default(tmp_path: Path) -> None:
    result = run_probe(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout


def test_required_timescale_turns_its_skips_into_failures(tmp_path: Path) -> None:
    result = run_probe(tmp_path, APM_TEST_REQUIRE_TIMESCALE="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 skipped" in result.stdout
    assert "APM_TEST_REQUIRE_TIMESCALE=1: no TimescaleDB here" in result.stdout
