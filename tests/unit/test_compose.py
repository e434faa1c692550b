"""compose.yaml, Dockerfile and .env.example, checked without a Docker engine.

compose.yaml is validated against the Compose specification's JSON schema (check-jsonschema's
vendored copy), the Dockerfile is linted by hadolint, and both are read for the properties the
deployment relies on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: install the dev extra (pip install -e '.[dev]')"
    return str(path)


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_compose_file_follows_the_compose_specification() -> None:
    result = validate_compose(ROOT / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  web:\n    image: x\n    ports: 8000\n    restartt: always\n")
    assert validate_compose(broken).returncode != 0


def test_db_is_pinned_timescaledb_on_postgresql_17_with_a_volume_and_healthcheck(
    compose: dict,
) -> None:
    db = compose["services"]["db"]
    assert re.fullmatch(r"timescale/timescaledb:2\.\d+\.\d+-pg17", db["image"])
    (volume,) = db["volumes"]
    name, target = volume.split(":", 1)
    assert name in compose["volumes"] and target == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "POSTGRES_PASSWORD" in db["environment"]


def test_web_is_built_here_configured_from_env_and_waits_for_the_database(
    compose: dict,
) -> None:
    web = compose["services"]["web"]
    assert web["build"]["context"] == "." and web["build"]["dockerfile"] == "Dockerfile"
    assert web["env_file"] == ".env"
    assert web["ports"] == ["${WEB_PORT:-8000}:8000"]
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert web["environment"]["POSTGRES_HOST"] == "db"


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && apt-get install curl\n")
    assert hadolint(bad).returncode != 0


def test_dockerfile_shape(dockerfile: str) -> None:
    lines = [line.strip() for line in dockerfile.splitlines()]
    (base,) = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.11-slim(-\w+)?", base)
    (user,) = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    # Dependencies are installed before the source is copied (a cached layer).
    deps = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    source = next(i for i, line in enumerate(lines) if line.startswith("COPY src"))
    assert deps < source
    # alembic.ini and alembic/ sit at the repository root of the editable install, where
    # apm.adapters.migrations looks for them.
    assert any(line.startswith("COPY") and "alembic.ini" in line for line in lines)
    assert any(line.startswith("COPY alembic ") for line in lines)
    assert "pip install --no-deps -e ." in dockerfile
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK"):]
    assert "/api/health/" in healthcheck.split("\n\n")[0] and "curl" not in healthcheck
    assert '"apm"' in dockerfile and '"serve"' in dockerfile


def test_migrations_are_found_relative_to_the_package() -> None:
    from apm.adapters.migrations import PROJECT_ROOT

    assert (PROJECT_ROOT / "alembic.ini").exists() and (PROJECT_ROOT / "alembic").is_dir()
    assert PROJECT_ROOT / "src" / "apm" == Path(sys.modules["apm"].__file__).parent


def _settings_variables() -> set[str]:
    source = (ROOT / "src" / "apm" / "settings.py").read_text()
    names = set(re.findall(r'"((?:APM|POSTGRES|DB|DRF)_[A-Z_]+)"', source))
    # api_keys(env, "X") also reads X_FILE.
    names |= {f"{name}_FILE" for name in re.findall(r'api_keys\(env, "([A-Z_]+)"\)', source)}
    return names


def test_env_example_lists_every_setting() -> None:
    listed = set(
        re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    wanted = _settings_variables() | {"WEB_PORT", "APM_WORKERS", "APM_API_KEY"}
    assert len(wanted) > 20
    assert wanted - listed == set()
    assert listed - wanted == set()


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", ".apm", "tests", "**/__pycache__"} <= ignored
