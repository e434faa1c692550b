"""Bulk ingest (spec 2.3)."""

from __future__ import annotations

from litestar import Controller, Request, post
from litestar.di import NamedDependency

from apm.api.body import read_body_bytes
from apm.api.deps import Ports
from apm.api.metrics import record_ingest
from apm.api.openapi import INGEST_BODY, documented, ingest_parameters, ingest_responses
from apm.domain.ingest import IngestReport, decode_ingest, parse_ingest_options


class IngestController(Controller):
    path = "/api/requests/ingest"
    tags = ["requests"]

    @post(
        "/",
        operation_id="ingestRequests",
        summary="Store many request events in one transaction",
        status_code=200,
        operation_class=documented(query=ingest_parameters(), body=INGEST_BODY),
        responses=ingest_responses(),
    )
    async def ingest(self, request: Request, ports: NamedDependency[Ports]) -> IngestReport:
        limits = ports.limits
        options = parse_ingest_options(
            request.query_params,
            max_events=limits.ingest_max_events,
            max_errors=limits.ingest_max_errors,
            batch_size=limits.ingest_batch_size,
        )
        plan = decode_ingest(await read_body_bytes(request, limit=limits.max_body_bytes), options)
        inserted = await ports.ingest.store(plan.batch, batch_size=options.batch_size)
        report = plan.report(inserted)
        record_ingest(inserted=report.inserted, rejected=report.rejected)
        return report
