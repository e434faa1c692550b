"""Record CRUD and the filtered list (spec 2.2)."""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from apm.api.body import read_json
from apm.api.deps import Ports
from apm.api.openapi import EVENT_BODY, LIST_PARAMETERS, PATCH_BODY, documented, error_responses
from apm.domain.listing import parse_list_query
from apm.domain.records import ApiRequest
from apm.domain.validation import changes_from_json, record_from_json


def _page_url(request: Request, page: int | None) -> str | None:
    if page is None:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    if page > 1:
        params.append(("page", str(page)))
    base = f"{str(request.base_url).rstrip('/')}/api/requests/"
    return f"{base}?{urlencode(params)}" if params else base


class RequestPage(msgspec.Struct, kw_only=True):
    """One page of the list; `next`/`previous` are absolute URLs or null."""

    count: int
    next: str | None
    previous: str | None
    results: list[ApiRequest]


class RequestsController(Controller):
    path = "/api/requests"
    tags = ["requests"]

    @get(
        "/",
        operation_id="listRequests",
        summary="List request events",
        operation_class=documented(query=LIST_PARAMETERS),
        responses=error_responses(400, 404, 503),
    )
    async def list_requests(self, request: Request, ports: NamedDependency[Ports]) -> RequestPage:
        query = parse_list_query(request.query_params, default_page_size=ports.limits.page_size)
        page = await ports.records.list(query)
        has_next = query.page * query.page_size < page.count
        return RequestPage(
            count=page.count,
            next=_page_url(request, query.page + 1 if has_next else None),
            previous=_page_url(request, query.page - 1 if query.page > 1 else None),
            results=page.results,
        )

    @post(
        "/",
        operation_id="createRequest",
        summary="Store one request event",
        operation_class=documented(body=EVENT_BODY),
        responses=error_responses(400, 413, 415, 503),
    )
    async def create_request(self, request: Request, ports: NamedDependency[Ports]) -> Response[ApiRequest]:
        data = record_from_json(await read_json(request, limit=ports.limits.max_body_bytes))
        record = await ports.records.create(data)
        return Response(
            record,
            status_code=HTTP_201_CREATED,
            headers={"Location": f"/api/requests/{record.id}/"},
        )

    @get(
        "/{request_id:int}",
        operation_id="getRequest",
        summary="Read one request event",
        responses=error_responses(400, 404, 503),
    )
    async def get_request(self, request_id: FromPath[int], ports: NamedDependency[Ports]) -> ApiRequest:
        return await ports.records.get(request_id)

    @put(
        "/{request_id:int}",
        operation_id="replaceRequest",
        summary="Replace one event",
        operation_class=documented(body=EVENT_BODY),
        responses=error_responses(400, 404, 413, 415, 503),
    )
    async def replace_request(
        self, request_id: FromPath[int], request: Request, ports: NamedDependency[Ports]
    ) -> ApiRequest:
        data = record_from_json(await read_json(request, limit=ports.limits.max_body_bytes))
        return await ports.records.replace(request_id, data=data)

    @patch(
        "/{request_id:int}",
        operation_id="updateRequest",
        summary="Change some fields",
        operation_class=documented(body=PATCH_BODY),
        responses=error_responses(400, 404, 413, 415, 503),
    )
    async def update_request(
        self, request_id: FromPath[int], request: Request, ports: NamedDependency[Ports]
    ) -> ApiRequest:
        changes = changes_from_json(await read_json(request, limit=ports.limits.max_body_bytes))
        return await ports.records.update(request_id, changes=changes)

    @delete(
        "/{request_id:int}",
        operation_id="deleteRequest",
        summary="Delete one event",
        status_code=HTTP_204_NO_CONTENT,
        responses=error_responses(400, 404, 503),
    )
    async def delete_request(self, request_id: FromPath[int], ports: NamedDependency[Ports]) -> None:
        await ports.records.delete(request_id)
