"""What the OpenAPI document says about the parts of a request the handlers parse themselves.

Handlers read query parameters from `request.query_params` and bodies through
`apm.api.body` (gzip, size limits, one msgspec decode, our own messages). Litestar cannot see
those, so each handler names them here: `documented(query=..., body=...)` returns an
`operation_class` that adds the parameters and the request body to the handler's operation,
and `error_responses(...)` documents the error answers of `apm.api.errors`. Nothing here
validates anything: the schemas state the contract so that clients (and the schema fuzz test)
know what is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)

from apm.domain.analytics import ROLLUP_LIMIT_MAX, SORT_KEYS, TOP_LIMIT_MAX
from apm.domain.ingest import EventError
from apm.domain.listing import MAX_FILTER_LENGTH, MAX_PAGE_SIZE
from apm.domain.records import METHODS, ORDERING_FIELDS
from apm.domain.validation import MAX_ENDPOINT, MAX_LATENCY, MAX_REF, MAX_SERVICE

# --- error bodies (as rendered by apm.api.errors) -------------------------------------------


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error answer: a human sentence; some carry more keys."""

    detail: str


class FieldErrorBody(msgspec.Struct, kw_only=True):
    """400: `errors` maps each bad parameter or field to its messages (absent when the body
    itself was malformed)."""

    detail: str
    errors: dict[str, list[str]] | None = None


class UnavailableBody(msgspec.Struct, kw_only=True):
    """503: the database cannot be reached: `{"detail": "Database unavailable."}`."""

    detail: str


class IngestRefused(msgspec.Struct, kw_only=True):
    """400 of bulk ingest: a bad parameter (`errors` by name), a body that is not JSON or not
    an events array, or strict mode with invalid events (`inserted` 0, `rejected`, `errors` by
    event index)."""

    detail: str
    inserted: int | None = None
    rejected: int | None = None
    errors: dict[str, list[str]] | list[EventError] | None = None


class TooManyEventsBody(msgspec.Struct, kw_only=True):
    """413 of bulk ingest; `max_events` is present when the event count was the reason."""

    detail: str
    max_events: int | None = None


class HealthFailure(msgspec.Struct, kw_only=True):
    """503 of `GET /api/health/?db=1`: the probe failed; `detail` is the reason."""

    status: str
    db: str
    detail: str
    backend: str | None = None


HEALTH_RESPONSES = {
    400: ResponseSpec(
        data_container=FieldErrorBody, description="A parameter is invalid.",
        generate_examples=False,
    ),
    503: ResponseSpec(
        data_container=HealthFailure, description="`db=1` and the database does not answer.",
        generate_examples=False,
    ),
}

_DESCRIPTIONS = {
    400: "A parameter or field is invalid (`errors` names each), or the body is malformed JSON.",
    401: "API keys are configured and the request has no valid key for this operation.",
    404: "No such record, or a page past the end.",
    413: "The body (compressed or decompressed) is larger than the configured limit.",
    415: "The body is not JSON (Content-Type) or has an unsupported Content-Encoding.",
    503: "The database cannot be reached.",
}
_CONTAINERS: dict[int, type] = {400: FieldErrorBody, 503: UnavailableBody}


def error_responses(
    *codes: int, override: Mapping[int, ResponseSpec] | None = None
) -> dict[int, ResponseSpec]:
    """ResponseSpecs for the given error statuses (401 is always added: keys may be set)."""
    specs = {
        code: ResponseSpec(
            data_container=_CONTAINERS.get(code, ErrorBody),
            description=_DESCRIPTIONS[code],
            generate_examples=False,
        )
        for code in sorted({*codes, 401})
    }
    specs.update(override or {})
    return specs


def ingest_responses() -> dict[int, ResponseSpec]:
    return error_responses(
        400, 413, 415, 503,
        override={
            400: ResponseSpec(
                data_container=IngestRefused, description=IngestRefused.__doc__ or "",
                generate_examples=False,
            ),
            413: ResponseSpec(
                data_container=TooManyEventsBody,
                description="More events than max_events, or a body over the size limit.",
                generate_examples=False,
            ),
        },
    )


# --- schema helpers -------------------------------------------------------------------------


def string(
    *, max_length: int | None = None, min_length: int | None = None, fmt: str | None = None,
    enum: Sequence[str] | None = None, description: str | None = None,
) -> Schema:
    return Schema(
        type=OpenAPIType.STRING, max_length=max_length, min_length=min_length, format=fmt,  # type: ignore[arg-type]
        enum=list(enum) if enum else None, description=description,
    )


def integer(
    *, minimum: int | None = None, maximum: int | None = None, description: str | None = None
) -> Schema:
    return Schema(
        type=OpenAPIType.INTEGER, minimum=minimum, maximum=maximum, description=description
    )


def number(description: str | None = None) -> Schema:
    return Schema(type=OpenAPIType.NUMBER, description=description)


BOOLEAN_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")


def boolean_word(description: str | None = None) -> Schema:
    return string(enum=BOOLEAN_WORDS, description=description)


def nullable(schema: Schema) -> Schema:
    return Schema(one_of=[schema, Schema(type=OpenAPIType.NULL)])


def query(name: str, schema: Schema, description: str) -> Parameter:
    """An optional query parameter; an empty value (`?name=`) counts as leaving it out."""
    return Parameter(
        name=name, param_in="query", schema=schema, description=description, required=False,
        allow_empty_value=True,
    )


# --- request bodies -------------------------------------------------------------------------

TAGS = Schema(
    type=OpenAPIType.OBJECT,
    additional_properties=True,
    description="Free-form JSON object (at most 8 levels deep, 256 keys or items per level, "
    "strings of at most 1024 characters).",
)


def event_schema(*, partial: bool = False) -> Schema:
    """One event as a client sends it (spec section 1); `partial` for PATCH."""
    properties: dict[str, Schema] = {
        "time": string(fmt="date-time", description="ISO-8601; naive = UTC."),
        "service": string(min_length=1, max_length=MAX_SERVICE, description="Trimmed."),
        "endpoint": string(min_length=1, max_length=MAX_ENDPOINT, description="Trimmed."),
        "method": string(enum=METHODS, description="Any case; stored upper-case."),
        "status_code": integer(minimum=100, maximum=599),
        "latency_ms": integer(minimum=0, maximum=MAX_LATENCY),
        "trace_id": nullable(string(max_length=MAX_REF)),
        "user_ref": nullable(string(max_length=MAX_REF)),
        "tags": TAGS,
    }
    return Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,  # type: ignore[arg-type]
        required=None if partial else
        ["time", "service", "endpoint", "method", "status_code", "latency_ms"],
        description="Unknown keys are ignored.",
    )


def json_body(schema: Schema, description: str) -> RequestBody:
    return RequestBody(
        content={"application/json": OpenAPIMediaType(schema=schema)},
        description=description + " `Content-Encoding: gzip` is accepted.",
        required=True,
    )


EVENT_BODY = json_body(event_schema(), "One event; every required field must be present.")
PATCH_BODY = json_body(event_schema(partial=True), "The fields to change.")
INGEST_BODY = json_body(
    Schema(
        one_of=[
            Schema(type=OpenAPIType.ARRAY, items=event_schema()),
            Schema(
                type=OpenAPIType.OBJECT,
                properties={"events": Schema(type=OpenAPIType.ARRAY, items=event_schema())},
                required=["events"],
            ),
        ]
    ),
    "A JSON array of events, or an object `{\"events\": [...]}`; each event is validated on "
    "its own.",
)


# --- query parameters -----------------------------------------------------------------------

_FILTER = string(max_length=MAX_FILTER_LENGTH)

LIST_PARAMETERS = [
    query("service", _FILTER, "Exact match."),
    query("endpoint", _FILTER, "Exact match."),
    query("trace_id", _FILTER, "Exact match."),
    query("user_ref", _FILTER, "Exact match."),
    query("method", string(enum=METHODS), "Case-insensitive."),
    query("status_code", integer(minimum=100, maximum=599), "Exact match."),
    query("status_code__in", string(), "Comma-separated statuses, e.g. `200,201,204`."),
    query("time_after", string(), "Inclusive lower bound: ISO-8601 datetime or date."),
    query("time_before", string(), "Inclusive upper bound: ISO-8601 datetime or date "
          "(a date includes that whole day)."),
    query("latency_min", number(), "Inclusive, milliseconds."),
    query("latency_max", number(), "Inclusive, milliseconds."),
    query("search", string(), "Case-insensitive substring over service, endpoint, trace_id and "
          "user_ref; terms split on spaces and commas must all match."),
    query("ordering", string(), "Comma list of "
          f"{', '.join(ORDERING_FIELDS)}, each optionally prefixed with `-` (default `-time`)."),
    query("page", integer(minimum=1), "1-based page number."),
    query("page_size", integer(minimum=1, maximum=MAX_PAGE_SIZE), "Events per page."),
]

WINDOW_PARAMETERS = [
    query("start", string(), "Window start: ISO-8601 datetime or date (that day's 00:00 UTC). "
          "Default: end minus the endpoint's span; the window is at most 3660 days."),
    query("end", string(), "Window end, exclusive: ISO-8601 datetime or date (a date includes "
          "that whole day). Default: now."),
    query("service", _FILTER, "Exact match."),
    query("endpoint", _FILTER, "Exact match."),
    query("method", string(enum=METHODS), "Case-insensitive."),
]

ROLLUP_PARAMETERS = [
    *WINDOW_PARAMETERS,
    query("limit", integer(minimum=1, maximum=ROLLUP_LIMIT_MAX), "Most rows (default 500)."),
]

_WINDOW_FIGURES = [
    *WINDOW_PARAMETERS,
    query("error_from", integer(minimum=100, maximum=599),
          "An event is an error when status_code >= error_from (default 500)."),
    query("granularity", string(enum=("auto", "hourly", "daily")),
          "Which rollup serves the window (auto: hourly up to 48 hours, else daily)."),
]

KPI_PARAMETERS = [
    *_WINDOW_FIGURES,
    query("with_p95", boolean_word(), "Compute the exact p95_latency_ms (default true). It "
          "reads every event of the window; false skips it (p95_latency_ms is then null)."),
]

TOP_PARAMETERS = [
    *_WINDOW_FIGURES,
    query("limit", integer(minimum=1, maximum=TOP_LIMIT_MAX), "Most rows (default 20)."),
    query("sort_by", string(enum=SORT_KEYS), "The figure to rank by (default hits)."),
    query("direction", string(enum=("asc", "desc")), "Default desc; ties by service, endpoint."),
    query("with_p95", boolean_word(), "Compute p95_latency_ms for every row (default false)."),
]


def ingest_parameters(*, max_events: int | None = None) -> list[Parameter]:
    return [
        query("max_events", integer(minimum=1, maximum=max_events),
              "Most events accepted (default and upper bound: APM_INGEST_MAX_EVENTS)."),
        query("max_errors", integer(minimum=0),
              "Most per-event errors listed (0 = counts only; upper bound "
              "APM_INGEST_MAX_ERRORS)."),
        query("batch_size", integer(minimum=1),
              "Rows per database write (a value above max_events is clamped)."),
        query("strict", boolean_word(), "Reject the whole request when any event is invalid."),
    ]


# --- the operation hook ---------------------------------------------------------------------


def documented(
    *, query: Iterable[Parameter] = (), body: RequestBody | None = None
) -> type[Operation]:
    """An `operation_class` adding the handler's own query parameters and JSON body."""
    extra = list(query)

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            known = {param.name for param in self.parameters or [] if isinstance(param, Parameter)}
            self.parameters = [
                *(self.parameters or []), *(param for param in extra if param.name not in known)
            ] or None
            if body is not None:
                self.request_body = body

    return DocumentedOperation
