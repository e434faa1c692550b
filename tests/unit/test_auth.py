"""API keys: settings parsing and the guard, over fake ports (no I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from apm.api.auth import ApiKeys, is_loopback, matches, open_access_warning
from apm.api.deps import Ports
from apm.app import create_app
from apm.settings import Settings, SettingsError
from tests.unit.fakes import FakeIngest, FakeRecords, FakeStatus

INGEST = "ingest-key-0123456789abcdef"
INGEST_2 = "ingest-key-second-0123456789"
READ = "read-key-0123456789abcdef"
EVENT = {
    "time": "2025-12-14T12:00:00Z", "service": "billing", "endpoint": "/x", "method": "GET",
    "status_code": 200, "latency_ms": 1,
}


# --- settings -------------------------------------------------------------------------------


def test_keys_are_unset_by_default() -> None:
    settings = Settings.from_env({})
    assert settings.ingest_keys == () and settings.read_keys == ()


def test_inline_keys_are_comma_separated_and_trimmed() -> None:
    settings = Settings.from_env(
        {"APM_INGEST_KEYS": f" {INGEST} ,{INGEST_2},, {INGEST}", "APM_READ_KEYS": READ}
    )
    assert settings.ingest_keys == (INGEST, INGEST_2)
    assert settings.read_keys == (READ,)


def test_keys_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# collectors\n{INGEST}\n\n  {INGEST_2}  \n")
    settings = Settings.from_env({"APM_INGEST_KEYS_FILE": str(path)})
    assert settings.ingest_keys == (INGEST, INGEST_2)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"APM_INGEST_KEYS": "short"}, "APM_INGEST_KEYS"),
        ({"APM_READ_KEYS": "has a space in it, 0123456789"}, "APM_READ_KEYS"),
        ({"APM_READ_KEYS": f"{READ},bad\u00e9key0123456789abc"}, "APM_READ_KEYS"),
        ({"APM_INGEST_KEYS": INGEST, "APM_INGEST_KEYS_FILE": "/x"}, "APM_INGEST_KEYS_FILE"),
        ({"APM_READ_KEYS_FILE": "/nonexistent/apm-keys"}, "APM_READ_KEYS_FILE"),
    ],
)
def test_bad_keys_fail_naming_the_variable_but_never_the_key(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert named in message
    for value in env.values():
        if value.startswith("/"):
            continue
        for key in value.split(","):
            assert len(key.strip()) < 5 or key.strip() not in message


def test_an_empty_key_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nothing here\n\n")
    with pytest.raises(SettingsError, match="APM_READ_KEYS_FILE"):
        Settings.from_env({"APM_READ_KEYS_FILE": str(path)})


# --- pieces ---------------------------------------------------------------------------------


def test_matching_compares_digests_of_every_key() -> None:
    keys = ApiKeys.from_keys(ingest=[INGEST, INGEST_2])
    assert matches(INGEST_2, keys.ingest) and matches(INGEST, keys.ingest)
    assert not matches(INGEST[:-1], keys.ingest)
    assert not matches(INGEST + "x", keys.ingest)
    assert not matches("", keys.ingest)
    assert INGEST not in repr(keys) and "ingest" not in repr(keys)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.10", False),
     ("apm.example", False)],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_access_warning_names_what_is_open() -> None:
    assert open_access_warning(ApiKeys(), host="127.0.0.1") is None
    warning = open_access_warning(ApiKeys(), host="0.0.0.0")
    assert warning and "writes and reads" in warning and "APM_READ_KEYS" in warning
    only_reads_open = open_access_warning(ApiKeys.from_keys(ingest=[INGEST]), host="0.0.0.0")
    assert only_reads_open and "reads open" in only_reads_open
    both = ApiKeys.from_keys(ingest=[INGEST], read=[READ])
    assert open_access_warning(both, host="0.0.0.0") is None


# --- the guard over HTTP --------------------------------------------------------------------


def settings_with(**keys: tuple[str, ...]) -> Settings:
    return msgspec.structs.replace(Settings(), **keys)  # type: ignore[arg-type]


async def client_for(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    records = FakeRecords()
    ports = Ports(records=records, ingest=FakeIngest(records), analytics=None, status=FakeStatus())  # type: ignore[arg-type]
    async with AsyncTestClient(create_app(settings, ports=ports)) as client:
        yield client


@pytest.fixture
async def locked() -> AsyncIterator[AsyncTestClient]:
    async for client in client_for(
        settings_with(ingest_keys=(INGEST, INGEST_2), read_keys=(READ,))
    ):
        yield client


@pytest.fixture
async def open_client() -> AsyncIterator[AsyncTestClient]:
    async for client in client_for(Settings()):
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_unset_keys_leave_everything_open(open_client: AsyncTestClient) -> None:
    assert (await open_client.post("/api/requests/", json=EVENT)).status_code == 201
    assert (await open_client.get("/api/requests/")).status_code == 200


async def test_missing_key_is_401_with_www_authenticate(locked: AsyncTestClient) -> None:
    for method, path, body in [
        ("GET", "/api/requests/", None),
        ("GET", "/api/requests/1/", None),
        ("POST", "/api/requests/", EVENT),
        ("PUT", "/api/requests/1/", EVENT),
        ("PATCH", "/api/requests/1/", {"latency_ms": 3}),
        ("DELETE", "/api/requests/1/", None),
    ]:
        response = await locked.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["detail"].startswith("Authentication required")


async def test_wrong_key_is_401_and_never_echoed(locked: AsyncTestClient) -> None:
    wrong = "wrong-key-0123456789abcdef"
    response = await locked.get("/api/requests/", headers=bearer(wrong))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert wrong not in response.text and READ not in response.text
    assert (await locked.get("/api/requests/", headers={"X-API-Key": wrong})).status_code == 401
    basic = await locked.get("/api/requests/", headers={"Authorization": f"Basic {READ}"})
    assert basic.status_code == 401


async def test_ingest_keys_write_and_read_keys_read(locked: AsyncTestClient) -> None:
    created = await locked.post("/api/requests/", json=EVENT, headers=bearer(INGEST))
    assert created.status_code == 201
    record_id = created.json()["id"]
    second = await locked.post("/api/requests/", json=EVENT, headers={"X-API-Key": INGEST_2})
    assert second.status_code == 201
    read = await locked.get(f"/api/requests/{record_id}/", headers=bearer(READ))
    assert read.status_code == 200
    assert (await locked.get("/api/requests/", headers={"x-api-key": READ})).json()["count"] == 2
    patched = await locked.patch(
        f"/api/requests/{record_id}/", json={"latency_ms": 2}, headers=bearer(INGEST)
    )
    assert patched.status_code == 200
    deleted = await locked.delete(f"/api/requests/{record_id}/", headers=bearer(INGEST_2))
    assert deleted.status_code == 204


async def test_keys_do_not_cross_sides(locked: AsyncTestClient) -> None:
    """A collector's ingest key cannot read the data; a dashboard's read key cannot write."""
    assert (await locked.get("/api/requests/", headers=bearer(INGEST))).status_code == 401
    posted = await locked.post("/api/requests/", json=EVENT, headers=bearer(READ))
    assert posted.status_code == 401


async def test_the_guard_runs_before_the_body_is_read(locked: AsyncTestClient) -> None:
    response = await locked.post(
        "/api/requests/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


async def test_health_and_schema_stay_open(locked: AsyncTestClient) -> None:
    assert (await locked.get("/api/health/")).status_code == 200
    assert (await locked.get("/api/health/?db=1")).status_code == 200
    assert (await locked.get("/schema/openapi.json")).status_code == 200


async def test_one_side_configured_leaves_the_other_open() -> None:
    async for client in client_for(settings_with(ingest_keys=(INGEST,))):
        assert (await client.get("/api/requests/")).status_code == 200
        assert (await client.post("/api/requests/", json=EVENT)).status_code == 401
    async for client in client_for(settings_with(read_keys=(READ,))):
        assert (await client.post("/api/requests/", json=EVENT)).status_code == 201
        assert (await client.get("/api/requests/")).status_code == 401


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **context: object) -> None:
        self.warnings.append((event, context))

    def info(self, event: str, **context: object) -> None:
        pass


@pytest.mark.parametrize(
    ("host", "keys", "warned"),
    [
        ("0.0.0.0", {}, True),
        ("0.0.0.0", {"ingest_keys": (INGEST,)}, True),
        ("0.0.0.0", {"ingest_keys": (INGEST,), "read_keys": (READ,)}, False),
        ("127.0.0.1", {}, False),
        ("::1", {}, False),
    ],
)
def test_start_up_warns_when_open_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str, keys: dict[str, tuple[str, ...]], warned: bool
) -> None:
    import apm.app

    log = RecordingLog()
    monkeypatch.setattr(apm.app, "log", log)
    records = FakeRecords()
    ports = Ports(records=records, ingest=FakeIngest(records), analytics=None, status=FakeStatus())  # type: ignore[arg-type]
    create_app(msgspec.structs.replace(Settings(), host=host, **keys), ports=ports)
    events = [event for event, _ in log.warnings]
    assert ("auth.open_access" in events) is warned
    for _, context in log.warnings:
        assert INGEST not in str(context) and READ not in str(context)


async def test_the_openapi_document_describes_configured_keys(
    locked: AsyncTestClient, open_client: AsyncTestClient
) -> None:
    document = (await locked.get("/schema/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerKey"]["scheme"] == "bearer"
    assert schemes["headerKey"] == {**schemes["headerKey"], "type": "apiKey", "name": "X-API-Key"}
    assert document["security"] == [{"bearerKey": []}, {"headerKey": []}]
    assert document["paths"]["/api/health"]["get"]["security"] == [{}]
    listing = document["paths"]["/api/requests"]["get"]["responses"]
    assert "401" in listing
    unlocked = (await open_client.get("/schema/openapi.json")).json()
    assert "security" not in unlocked and "securitySchemes" not in unlocked.get("components", {})
