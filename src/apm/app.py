"""The composition root: settings -> engine -> adapters -> Litestar app.

Only this module (and the CLI) knows both the HTTP side and the storage side. Choosing the
backend is choosing the adapter objects here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from apm import __version__
from apm.adapters.engine import build_engine, build_sessionmaker
from apm.adapters.postgres.analytics import PostgresAnalytics
from apm.adapters.postgres.ingest import PostgresIngest
from apm.adapters.postgres.records import PostgresRecords
from apm.adapters.postgres.rollups import PostgresRollups, RollupCompactor
from apm.adapters.postgres.status import PostgresStatus
from apm.adapters.timescale.analytics import TimescaleAnalytics
from apm.adapters.timescale.ingest import TimescaleIngest
from apm.adapters.timescale.records import TimescaleRecords
from apm.adapters.timescale.refresher import AggregateRefresher
from apm.adapters.timescale.status import timescale_missing
from apm.api.analytics import AnalyticsController
from apm.api.auth import PUBLIC, ApiKeyGuard, ApiKeys, open_access_warning, openapi_security
from apm.api.deps import Limits, Ports, provide_ports
from apm.api.errors import EXCEPTION_HANDLERS
from apm.api.health import HealthController
from apm.api.ingest import IngestController
from apm.api.metrics import MetricsController, prometheus_config
from apm.api.middleware import request_log_middleware
from apm.api.requests import RequestsController
from apm.domain.errors import BackendUnsupported
from apm.domain.ports import AnalyticsPort
from apm.settings import Settings

log = structlog.get_logger("apm.app")


@dataclass
class Storage:
    """The engine and the ports built on it; `close()` stops background work, then the pool."""

    engine: AsyncEngine
    ports: Ports
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self.closers:
            await close()
        await self.engine.dispose()


def limits_from(settings: Settings) -> Limits:
    return Limits(
        page_size=settings.page_size,
        ingest_batch_size=settings.ingest_batch_size,
        ingest_max_events=settings.ingest_max_events,
        ingest_max_errors=settings.ingest_max_errors,
        max_body_bytes=settings.max_body_bytes,
    )


async def resolve_backend(engine: AsyncEngine, wanted: str) -> str:
    """auto = TimescaleDB when the database has its objects (extension, hypertable and
    continuous aggregates: migration 0002), else postgres."""
    if wanted == "postgres":
        return "postgres"
    missing = await timescale_missing(engine)
    if wanted == "timescale" and missing is not None:
        raise BackendUnsupported(
            f"APM_BACKEND=timescale, but {missing} (run `apm migrate` on a server that has "
            "TimescaleDB, or use APM_BACKEND=postgres)."
        )
    if missing is not None:
        log.info("storage.timescale_unused", reason=missing)
    return "timescale" if missing is None else "postgres"


async def open_storage(settings: Settings) -> Storage:
    if settings.database_url is None:
        raise BackendUnsupported("No database configured: set APM_DATABASE_URL.")
    engine = build_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        sslmode=settings.db_sslmode,
    )
    try:
        backend = await resolve_backend(engine, settings.backend)
    except BaseException:
        await engine.dispose()
        raise
    sessions = build_sessionmaker(engine)
    closers: list[Callable[[], Awaitable[None]]] = []
    if backend == "postgres":
        # The plain backend keeps its rollup tables inside every write transaction.
        rollups = PostgresRollups(
            sessions, compactor=RollupCompactor(sessions, delay=settings.refresh_delay)
        )
        closers.append(rollups.compactor.close)
        await rollups.compactor.adopt_pending()
        records = PostgresRecords(sessions, hooks=rollups)
        ingest = PostgresIngest(sessions, write=settings.ingest_write, on_stored=rollups.stored)
        analytics: AnalyticsPort = PostgresAnalytics(sessions, rollups=rollups)
    else:
        # Continuous aggregates: writes below their watermark are refreshed in the background.
        refresher = AggregateRefresher(engine, delay=settings.refresh_delay)
        closers.append(refresher.close)
        records = TimescaleRecords(sessions, refresher=refresher)
        ingest = TimescaleIngest(
            PostgresIngest(sessions, write=settings.ingest_write), refresher=refresher
        )
        analytics = TimescaleAnalytics(sessions, refresher=refresher)
    ports = Ports(
        records=records,
        ingest=ingest,
        analytics=analytics,
        status=PostgresStatus(engine, backend=backend),
        limits=limits_from(settings),
    )
    log.info("storage.ready", backend=backend)
    return Storage(engine=engine, ports=ports, closers=closers)


def create_app(settings: Settings, *, ports: Ports | None = None) -> Litestar:
    """Build the app; with `ports` given (tests), no database is opened."""

    @asynccontextmanager
    async def storage_lifespan(app: Litestar) -> AsyncIterator[None]:
        if ports is not None:
            app.state.ports = ports
            yield
            return
        storage = await open_storage(settings)
        app.state.ports = storage.ports
        try:
            yield
        finally:
            await storage.close()

    keys = ApiKeys.from_keys(ingest=settings.ingest_keys, read=settings.read_keys)
    key_components, key_requirement = openapi_security(keys)
    if warning := open_access_warning(keys, host=settings.host):
        log.warning("auth.open_access", detail=warning)

    app = Litestar(
        route_handlers=[
            HealthController, RequestsController, IngestController, AnalyticsController,
            MetricsController,
        ],
        dependencies={"ports": Provide(provide_ports, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[prometheus_config().middleware],
        lifespan=[storage_lifespan],
        request_max_body_size=settings.max_body_bytes,
        guards=[ApiKeyGuard(keys)],
        openapi_config=OpenAPIConfig(
            title="apm",
            version=__version__,
            path="/schema",
            components=key_components,
            security=key_requirement,
            # The API document stays readable without a key, like health.
            openapi_router=Router(
                "/schema", route_handlers=[], include_in_schema=False, opt={PUBLIC: True}
            ),
        ),
        debug=False,
        # Logging is configured once by apm.logs (structlog for every logger); Litestar's own
        # configuration would replace the root handler with another format.
        logging_config=None,
    )
    # Around the whole app, not as route middleware: 404s and 405s match no route and would
    # otherwise leave no log line.
    app.asgi_handler = request_log_middleware(app.asgi_handler)
    return app


def app_from_env() -> Litestar:
    """Factory for ASGI servers started with several workers (`apm serve --workers N`)."""
    from apm.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
