"""API keys on a live server: keys from a file and from a variable, every route guarded as
documented, and no key ever written to the log (even at DEBUG)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apm.adapters.migrations import upgrade
from tests.support.live_server import LiveServer, live_server
from tests.support.postgres import create_database, drop_database

INGEST = "ingest-live-4f9c2a7e1b3d5c6a8e0f"
READ = "read-live-7d1e3f5a9c2b4d6e8f0a"
EVENT = {
    "time": "2025-12-14T12:00:00Z", "service": "auth-live", "endpoint": "/e", "method": "GET",
    "status_code": 200, "latency_ms": 5,
}


@pytest.fixture(scope="module")
def server(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url, name = asyncio.run(create_database(pg_server))
    upgrade(url)
    keys = tmp_path_factory.mktemp("keys") / "ingest-keys"
    keys.write_text(f"# collectors\n{INGEST}\n")
    env = {"APM_INGEST_KEYS_FILE": str(keys), "APM_READ_KEYS": READ, "APM_LOG_LEVEL": "DEBUG"}
    try:
        with live_server(url, env=env) as live:
            yield live
    finally:
        asyncio.run(drop_database(pg_server, name))


def test_every_documented_operation_is_guarded(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        paths = http.get("/schema/openapi.json").json()["paths"]
        guarded = 0
        for path, item in paths.items():
            for method in item:
                url = path.replace("{request_id}", "1")
                response = http.request(method.upper(), url, json=EVENT)
                if path.startswith("/api/health"):
                    assert response.status_code == 200, (method, path)
                    continue
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                guarded += 1
        assert guarded >= 6
        metrics = http.get("/metrics")
        if metrics.status_code != 404:
            assert metrics.status_code == 401
            authorised = http.get("/metrics", headers={"Authorization": f"Bearer {READ}"})
            assert authorised.status_code == 200


def test_keys_work_on_their_side_only_and_are_never_logged(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        write = {"Authorization": f"Bearer {INGEST}"}
        read = {"X-API-Key": READ}
        created = http.post("/api/requests/", json=EVENT, headers=write)
        assert created.status_code == 201
        record_id = created.json()["id"]
        assert http.get(f"/api/requests/{record_id}/", headers=read).status_code == 200
        assert http.get(f"/api/requests/{record_id}/", headers=write).status_code == 401
        assert http.post("/api/requests/", json=EVENT, headers=read).status_code == 401
        wrong = http.get("/api/requests/", headers={"Authorization": "Bearer " + READ[::-1]})
        assert wrong.status_code == 401 and READ[::-1] not in wrong.text
        assert http.delete(f"/api/requests/{record_id}/", headers=write).status_code == 204
    log = server.log()
    assert "http.request" in log  # the log is there, and it is written at DEBUG
    for secret in (INGEST, READ, READ[::-1]):
        assert secret not in log


def test_a_bad_key_setting_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    env = {"APM_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused", "APM_READ_KEYS": "short"}
    result = subprocess.run(
        [sys.executable, "-m", "apm.cli", "serve", "--no-migrate", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "APM_READ_KEYS" in result.stderr and "short" not in result.stderr
