"""Bulk ingest: the payload, its query options, and the batch of valid events it yields.

The payload is decoded once into typed Structs, one per event. When some item does not fit
the Struct (a missing field, a wrong type, not an object), the body is split into raw items
(`msgspec.Raw` slices) instead and each is decoded on its own. An item that passes the typed
decode and the cheap checks below is valid by construction. Any item that does not is decoded
generically and judged by `clean_record`, so its messages are exactly those of the
single-record API, and a valid event that merely missed the fast path (`200.0` as a status, a
tags object worth a closer look) is still accepted with the same clean values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from apm.domain.errors import DomainError, PayloadTooLarge, ValidationFailed
from apm.domain.listing import parse_bool, parse_int
from apm.domain.records import METHODS
from apm.domain.validation import (
    MAX_ENDPOINT,
    MAX_LATENCY,
    MAX_REF,
    MAX_SERVICE,
    TAGS_MAX_DEPTH,
    TAGS_MAX_STRING,
    Errors,
    clean_field,
    clean_record,
)


class EventBatch(msgspec.Struct, kw_only=True):
    """Parallel columns of valid events; `tags` holds each event's tags as JSON object text.

    Times are aware UTC; latencies are milliseconds.
    """

    time: list[datetime] = msgspec.field(default_factory=list)
    service: list[str] = msgspec.field(default_factory=list)
    endpoint: list[str] = msgspec.field(default_factory=list)
    method: list[str] = msgspec.field(default_factory=list)
    status_code: list[int] = msgspec.field(default_factory=list)
    latency_ms: list[int] = msgspec.field(default_factory=list)
    trace_id: list[str | None] = msgspec.field(default_factory=list)
    user_ref: list[str | None] = msgspec.field(default_factory=list)
    tags: list[str] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.time)


# --- errors -------------------------------------------------------------------------------


class MalformedPayload(DomainError):
    """The body is not JSON (the parser's reason is in `detail`)."""

    detail = "Malformed JSON."


class UnexpectedPayload(DomainError):
    detail = 'Expected a JSON array of events, or an object {"events": [...]}.'


class TooManyEvents(PayloadTooLarge):
    def __init__(self, got: int, allowed: int) -> None:
        super().__init__(
            f"Too many events: got {got}, max allowed is {allowed}.",
            extra={"max_events": allowed},
        )


class EventsRejected(DomainError):
    """Strict mode and at least one invalid event: nothing is stored."""


# --- options ------------------------------------------------------------------------------


class IngestOptions(msgspec.Struct, frozen=True, kw_only=True):
    """`batch_size` is already clamped to `max_events`; `max_errors` 0 means counts only."""

    max_events: int
    max_errors: int
    batch_size: int
    strict: bool = False


def parse_ingest_options(
    params: Mapping[str, str], *, max_events: int, max_errors: int, batch_size: int
) -> IngestOptions:
    """Query parameters within the configured limits; bad values raise ValidationFailed."""
    errors: Errors = {}
    events_limit = max_events
    if raw := params.get("max_events"):
        events_limit = parse_int("max_events", raw, 1, max_events, errors) or max_events
    errors_limit = max_errors
    if raw := params.get("max_errors"):
        parsed = parse_int("max_errors", raw, 0, max_errors, errors)
        errors_limit = max_errors if parsed is None else parsed
    size = batch_size
    if raw := params.get("batch_size"):
        try:
            size = int(raw.strip())
        except ValueError:
            errors["batch_size"] = ["batch_size must be a whole number."]
        else:
            if size < 1:
                errors["batch_size"] = ["batch_size must be at least 1."]
    strict = False
    if raw := params.get("strict"):
        flag = parse_bool(raw)
        if flag is None:
            errors["strict"] = ["strict must be a boolean (true/false, 1/0, yes/no, on/off)."]
        strict = bool(flag)
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    # A batch larger than the request may carry is the whole request: clamp, do not refuse.
    return IngestOptions(
        max_events=events_limit,
        max_errors=errors_limit,
        batch_size=max(1, min(size, events_limit)),
        strict=strict,
    )


# --- results ------------------------------------------------------------------------------


class EventError(msgspec.Struct, frozen=True, kw_only=True):
    """`index` is the 0-based position in the events array."""

    index: int
    errors: dict[str, list[str]]


class IngestReport(msgspec.Struct, frozen=True, kw_only=True):
    inserted: int
    rejected: int
    errors: list[EventError]


class IngestPlan(msgspec.Struct, kw_only=True):
    """The valid events of a payload, and the count and first errors of the invalid ones."""

    batch: EventBatch
    total: int
    rejected: int
    errors: list[EventError]

    def report(self, inserted: int) -> IngestReport:
        return IngestReport(inserted=inserted, rejected=self.rejected, errors=self.errors)


# --- decoding -----------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


class _Event(msgspec.Struct, gc=False):
    """The fast path's view of an event: anything it refuses goes to `clean_record`.

    It holds only strings, numbers and Raw, so it can stay out of the cycle collector.

    `time` stays a string so that it is parsed exactly as the record API parses it (msgspec's
    own datetime parser rounds nanoseconds and accepts forms the record API refuses).
    """

    time: str
    service: str
    endpoint: str
    method: str
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY)]
    trace_id: Annotated[str, msgspec.Meta(max_length=MAX_REF)] | None = None
    user_ref: Annotated[str, msgspec.Meta(max_length=MAX_REF)] | None = None
    tags: msgspec.Raw = msgspec.Raw(b"{}")


class _TypedEnvelope(msgspec.Struct):
    events: list[_Event]


_decode_typed_payload = msgspec.json.Decoder(list[_Event] | _TypedEnvelope).decode
_decode_payload = msgspec.json.Decoder(list[msgspec.Raw] | _Envelope).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

# Methods as clients usually spell them; anything else goes through strip().upper().
_METHOD_SPELLINGS = {spelling: m for m in METHODS for spelling in (m, m.lower(), m.title())}

# Tags text that may be stored as sent without a look inside: a small object (so no number in
# it is longer than jsonb's numeric takes) without arrays (an array may hold more items than
# allowed in few bytes), nested less deeply than the limit (counting every brace over-counts,
# which is safe), no NUL escape (PostgreSQL refuses \u0000 in jsonb) and no number with a
# 3-digit exponent (jsonb expands 1e131071 to 131072 digits and refuses others, while the
# record API stores such numbers as JSON floats).
_HUGE_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]{3}")
_TAGS_SMALL = TAGS_MAX_STRING
_TAGS_BRACES = TAGS_MAX_DEPTH - 1


_TOO_DEEP = "Malformed JSON: nested too deeply."


def _check_utf8(body: bytes) -> None:
    try:
        # msgspec does not check UTF-8 inside values it skips; the record API refuses such
        # bodies, and so does this one.
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedPayload(f"Malformed JSON: invalid UTF-8 at byte {error.start}.") from None


def _typed_events(body: bytes) -> list[_Event] | None:
    """Every item decoded in one pass, or None when any item needs a closer look."""
    try:
        payload = _decode_typed_payload(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return payload.events if isinstance(payload, _TypedEnvelope) else payload


def _payload_items(body: bytes) -> list[msgspec.Raw]:
    try:
        payload = _decode_payload(body)
    except msgspec.ValidationError:
        raise UnexpectedPayload() from None
    except msgspec.DecodeError as error:
        raise MalformedPayload(f"Malformed JSON: {error}") from None
    except RecursionError:
        # msgspec guards its recursion with the interpreter's limit, also when it only skips
        # over a value: [[[[...]]]] thousands deep stops here, for every item at once.
        raise MalformedPayload(_TOO_DEEP) from None
    return payload.events if isinstance(payload, _Envelope) else payload


def _event_or_none(raw: msgspec.Raw) -> _Event | None:
    try:
        return _decode_event(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


def _tags_text(text: str) -> str | None:
    """The tags as JSON object text fit for jsonb, or None when the record rules refuse them."""
    if (
        text[:1] == "{"
        and len(text) <= _TAGS_SMALL
        and "[" not in text
        and "\\u0000" not in text
        and text.count("{") <= _TAGS_BRACES
        and _HUGE_EXPONENT.search(text) is None
    ):
        return text
    try:
        value, problem = clean_field("tags", _decode_any(text))
    except (msgspec.DecodeError, RecursionError):
        return None  # the slow path gives the answer
    if problem:
        return None
    if len(text) <= _TAGS_SMALL and _HUGE_EXPONENT.search(text) is None:
        return text
    # A larger text may hold a number jsonb refuses (more than 16383 digits after the point)
    # or blows up (a huge exponent): store what the record API stores, the value as decoded.
    return _encode(value).decode()


def _trimmed(value: str, limit: int) -> str | None:
    """What the record rules make of a service or endpoint that is a string, or None."""
    value = value.strip()
    if 0 < len(value) <= limit and "\x00" not in value:
        return value
    return None


def _as_json(event: _Event) -> dict[str, Any]:
    """An event the typed decode accepted, as the generic decode would have given it: every
    required field was there, and absent optional ones mean the same to the record rules."""
    return {
        "time": event.time, "service": event.service, "endpoint": event.endpoint,
        "method": event.method, "status_code": event.status_code,
        "latency_ms": event.latency_ms, "trace_id": event.trace_id,
        "user_ref": event.user_ref, "tags": _decode_any(event.tags),
    }


def _clean_slowly(raw: msgspec.Raw | None, event: _Event | None) -> tuple[dict[str, Any], Errors]:
    try:
        obj = _as_json(event) if raw is None and event is not None else _decode_any(raw)
    except msgspec.DecodeError as error:
        raise MalformedPayload(f"Malformed JSON: {error}") from None
    except RecursionError:
        raise MalformedPayload(_TOO_DEEP) from None
    return clean_record(obj)


def decode_ingest(body: bytes, options: IngestOptions) -> IngestPlan:
    """Parse and validate a bulk payload.

    Raises MalformedPayload / UnexpectedPayload (400), TooManyEvents (413), and EventsRejected
    (400) in strict mode when any event is invalid.
    """
    _check_utf8(body)
    # Usually every item decodes with the typed Struct in one pass over the body. When one
    # does not, the body is split into raw items and each is decoded on its own, so that the
    # others keep the fast path and the odd one is judged by the record rules.
    raws: list[msgspec.Raw] | None = None
    events: list[_Event | None] | None = _typed_events(body)  # type: ignore[assignment]
    if events is None:
        raws = _payload_items(body)
        if len(raws) > options.max_events:
            raise TooManyEvents(len(raws), options.max_events)
        events = [_event_or_none(raw) for raw in raws]
    total = len(events)
    if total > options.max_events:
        raise TooManyEvents(total, options.max_events)

    batch = EventBatch()
    add_time, add_service = batch.time.append, batch.service.append
    add_endpoint, add_method = batch.endpoint.append, batch.method.append
    add_status, add_latency = batch.status_code.append, batch.latency_ms.append
    add_trace, add_user, add_tags = batch.trace_id.append, batch.user_ref.append, batch.tags.append
    fromisoformat = datetime.fromisoformat
    utc = UTC
    spellings = _METHOD_SPELLINGS
    errors: list[EventError] = []
    max_errors = options.max_errors
    rejected = 0
    # The senders of one request repeat their services, endpoints and tags: judge each text
    # once (and keep one string object per distinct value).
    services: dict[str, str | None] = {}
    endpoints: dict[str, str | None] = {}
    seen_tags: dict[str, str | None] = {}

    for index, event in enumerate(events):
        # Fast path: every check below is one the record rules make, in a cheaper form; the
        # first doubt sends the item to the slow path, which decides for good.
        if event is not None:
            try:
                moment = fromisoformat(event.time)
                zone = moment.tzinfo
                if zone is not utc:
                    moment = moment.replace(tzinfo=utc) if zone is None else moment.astimezone(utc)
            except (ValueError, OverflowError):
                moment = None
            service = services.get(event.service)
            if service is None:
                service = services[event.service] = _trimmed(event.service, MAX_SERVICE)
            endpoint = endpoints.get(event.endpoint)
            if endpoint is None:
                endpoint = endpoints[event.endpoint] = _trimmed(event.endpoint, MAX_ENDPOINT)
            method = spellings.get(event.method)
            trace_id = event.trace_id
            user_ref = event.user_ref
            if (
                moment is not None
                and service is not None
                and endpoint is not None
                and method is not None
                and (trace_id is None or "\x00" not in trace_id)
                and (user_ref is None or "\x00" not in user_ref)
            ):
                tags = str(event.tags, "utf-8")
                known = seen_tags.get(tags)
                if known is None:
                    known = seen_tags[tags] = _tags_text(tags)
                if known is not None:
                    add_time(moment)
                    add_service(service)
                    add_endpoint(endpoint)
                    add_method(method)
                    add_status(event.status_code)
                    add_latency(event.latency_ms)
                    add_trace(trace_id)
                    add_user(user_ref)
                    add_tags(known)
                    continue

        values, problems = _clean_slowly(None if raws is None else raws[index], event)
        if problems:
            rejected += 1
            if len(errors) < max_errors:
                errors.append(EventError(index=index, errors=problems))
            continue
        add_time(values["time"])
        add_service(values["service"])
        add_endpoint(values["endpoint"])
        add_method(values["method"])
        add_status(values["status_code"])
        add_latency(values["latency_ms"])
        add_trace(values["trace_id"])
        add_user(values["user_ref"])
        add_tags(_encode(values["tags"]).decode())

    if options.strict and rejected:
        raise EventsRejected(
            f"{rejected} of {total} events are invalid; nothing was stored (strict mode).",
            extra={
                "inserted": 0,
                "rejected": total,
                "errors": [msgspec.structs.asdict(error) for error in errors],
            },
        )
    return IngestPlan(batch=batch, total=total, rejected=rejected, errors=errors)
