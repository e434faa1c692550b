"""Health (spec 2.1)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from apm.api.auth import PUBLIC
from apm.api.deps import Ports
from apm.api.openapi import HEALTH_RESPONSES
from apm.domain.errors import StorageUnavailable
from apm.domain.listing import parse_bool


class HealthController(Controller):
    path = "/api/health"
    tags = ["health"]
    # Load balancers and orchestrators probe it without credentials.
    opt = {PUBLIC: True}
    security = [{}]  # type: ignore[assignment]

    @get(
        "/",
        operation_id="health",
        summary="Liveness, and with db=1 a database probe",
        responses=HEALTH_RESPONSES,
    )
    async def health(self, ports: NamedDependency[Ports], db: FromQuery[str | None] = None) -> Response[dict[str, str]]:
        body = {"status": "ok", "backend": ports.status.backend}
        if db is None or not parse_bool(db):
            return Response(body)
        try:
            await ports.status.probe()
        except StorageUnavailable as error:
            return Response(
                {"status": "error", "db": "unavailable", "detail": error.reason,
                 "backend": ports.status.backend},
                status_code=503,
            )
        return Response({**body, "db": "ok"})
