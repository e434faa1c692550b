"""The `apm` command line: serve, migrate (and the operations commands)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
import msgspec

from apm.settings import Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """With no database configured, run the embedded PostgreSQL in APM_DATA_DIR meanwhile."""
    if settings.database_url is not None:
        yield settings
        return
    from apm.adapters.embedded import EmbeddedPostgres

    click.echo(
        f"No database configured: using the embedded PostgreSQL in {settings.data_dir}/", err=True
    )
    server = EmbeddedPostgres(settings.data_dir)
    try:
        yield msgspec.structs.replace(settings, database_url=server.url)
    finally:
        server.close()


def migrate_to_head(settings: Settings) -> None:
    from apm.adapters.migrations import upgrade

    assert settings.database_url is not None
    upgrade(settings.database_url)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="apm")
def main() -> None:
    """apm: store API request events and serve their analytics."""


@main.command()
@click.option("--host", default=None, help="Bind address [default: APM_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: APM_PORT or 8000].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@click.option("--no-migrate", is_flag=True, help="Do not apply migrations before serving.")
def serve(host: str | None, port: int | None, workers: int, reload: bool, no_migrate: bool) -> None:
    """Apply migrations and serve the HTTP API."""
    import uvicorn

    from apm.app import create_app
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    with database(configured) as settings:
        if not no_migrate:
            migrate_to_head(settings)
        common = {
            "host": host or settings.host,
            "port": settings.port if port is None else port,
            "log_config": None,
            "access_log": False,
            "server_header": False,
        }
        # The server re-raises SIGTERM after its graceful shutdown; make that an ordinary exit
        # so the embedded database is stopped on the way out.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        if workers > 1 or reload:
            # Workers import the app themselves: hand them the resolved database URL.
            os.environ["APM_DATABASE_URL"] = settings.database_url or ""
            uvicorn.run(
                "apm.app:app_from_env", factory=True, workers=workers, reload=reload, **common
            )
        else:
            uvicorn.run(create_app(settings), **common)


@main.command()
def migrate() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    from apm.logs import configure_logging

    configured = load_settings()
    configure_logging(configured.log_level, configured.log_format)
    with database(configured) as settings:
        migrate_to_head(settings)
    click.echo("Migrations applied.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
