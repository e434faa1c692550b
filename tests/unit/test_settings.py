from __future__ import annotations

import pytest

from apm.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.page_size, settings.ingest_batch_size) == (50, 1000)
    assert (settings.ingest_max_events, settings.ingest_max_errors) == (50_000, 25)


def test_postgres_variables_build_a_url() -> None:
    settings = Settings.from_env(
        {"POSTGRES_HOST": "db", "POSTGRES_USER": "apm", "POSTGRES_PASSWORD": "p@ss",
         "POSTGRES_DB": "apm", "DB_SSLMODE": "require"}
    )
    assert settings.database_url == "postgresql+asyncpg://apm:p%40ss@db:5432/apm"
    assert settings.db_sslmode == "require"


def test_database_url_wins_and_is_normalised() -> None:
    settings = Settings.from_env({"APM_DATABASE_URL": "postgres://u@h/d", "POSTGRES_HOST": "x"})
    assert settings.database_url == "postgresql+asyncpg://u@h/d"


def test_drf_page_size_is_honoured() -> None:
    assert Settings.from_env({"DRF_PAGE_SIZE": "20"}).page_size == 20
    assert Settings.from_env({"DRF_PAGE_SIZE": "20", "APM_PAGE_SIZE": "30"}).page_size == 30


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APM_PAGE_SIZE", "zero"),
        ("APM_PAGE_SIZE", "0"),
        ("APM_BACKEND", "mysql"),
        ("APM_INGEST_MAX_EVENTS", "-1"),
        ("APM_PORT", "70000"),
        ("APM_LOG_LEVEL", "LOUD"),
        ("APM_DATABASE_URL", "mysql://x"),
        ("POSTGRES_PORT", "abc"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    env = {name: value}
    if name == "POSTGRES_PORT":
        env["POSTGRES_HOST"] = "db"
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)
