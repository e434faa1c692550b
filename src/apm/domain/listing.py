"""The record list: its query (filters, search, ordering, page) and the rules that parse it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

import msgspec

from apm.domain.errors import ValidationFailed
from apm.domain.records import METHODS, ORDERING_FIELDS, ApiRequest
from apm.domain.validation import Errors, end_of_day, parse_instant

MAX_PAGE_SIZE = 1000
MAX_SEARCH_TERMS = 10
MAX_FILTER_LENGTH = 255
_SEARCH_SPLIT = re.compile(r"[\s,]+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class OrderKey(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    descending: bool


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters combine with AND; `time_after`/`time_before` are inclusive, as is latency."""

    service: str | None = None
    endpoint: str | None = None
    trace_id: str | None = None
    user_ref: str | None = None
    method: str | None = None
    status_codes: tuple[int, ...] = ()
    time_after: datetime | None = None
    time_before: datetime | None = None
    time_before_exclusive: bool = False
    latency_min: float | None = None
    latency_max: float | None = None
    search_terms: tuple[str, ...] = ()
    ordering: tuple[OrderKey, ...] = (OrderKey(field="time", descending=True),)
    page: int = 1
    page_size: int = 50


class Page(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    results: list[ApiRequest]


def parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def parse_int(name: str, value: str, low: int, high: int, errors: Errors) -> int | None:
    try:
        number = int(value.strip())
    except ValueError:
        errors[name] = [f"{name} must be a whole number."]
        return None
    if not low <= number <= high:
        errors[name] = [f"{name} must be between {low} and {high}."]
        return None
    return number


def _parse_number(name: str, value: str, errors: Errors) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        errors[name] = [f"{name} must be a number."]
        return None
    if number != number or number in (float("inf"), float("-inf")):
        errors[name] = [f"{name} must be a finite number."]
        return None
    return number


def _parse_ordering(value: str, errors: Errors) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for part in value.split(","):
        name = part.strip()
        if not name:
            continue
        descending = name.startswith("-")
        field = name[1:] if descending else name
        if field not in ORDERING_FIELDS:
            errors["ordering"] = [
                f"ordering: unknown field {field!r}; allowed: {', '.join(ORDERING_FIELDS)}."
            ]
            return ()
        if all(key.field != field for key in keys):
            keys.append(OrderKey(field=field, descending=descending))
    return tuple(keys)


def _exact(name: str, params: Mapping[str, str], errors: Errors) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_LENGTH or "\x00" in value:
        errors[name] = [f"{name} must be at most {MAX_FILTER_LENGTH} characters, without NUL."]
        return None
    return value


def parse_list_query(params: Mapping[str, str], *, default_page_size: int) -> ListQuery:
    """Translate query parameters into a ListQuery; bad values raise ValidationFailed."""
    errors: Errors = {}
    fields: dict[str, object] = {}
    for name in ("service", "endpoint", "trace_id", "user_ref"):
        fields[name] = _exact(name, params, errors)

    if method := params.get("method"):
        if method.strip().upper() not in METHODS:
            errors["method"] = [f"method must be one of {', '.join(METHODS)}."]
        else:
            fields["method"] = method.strip().upper()

    codes: list[int] = []
    if status := params.get("status_code"):
        code = parse_int("status_code", status, 100, 599, errors)
        if code is not None:
            codes.append(code)
    if status_in := params.get("status_code__in"):
        parts = [part for part in status_in.split(",") if part.strip()]
        if len(parts) > 100:
            errors["status_code__in"] = ["status_code__in takes at most 100 codes."]
        for part in parts:
            code = parse_int("status_code__in", part, 100, 599, errors)
            if code is None:
                errors["status_code__in"] = [
                    "status_code__in must be a comma-separated list of HTTP statuses (100..599)."
                ]
                break
            codes.append(code)
    if status and status_in and not errors:
        # Both given: an event must match both, so only the exact code can remain.
        fields["status_codes"] = (codes[0],) if codes[0] in codes[1:] else (-1,)
    else:
        fields["status_codes"] = tuple(codes)

    for name in ("time_after", "time_before"):
        if value := params.get(name):
            instant = parse_instant(value)
            if instant is None:
                errors[name] = [f"{name} must be an ISO-8601 datetime or date."]
                continue
            moment, date_only = instant
            if name == "time_before" and date_only:
                fields["time_before"] = end_of_day(moment)
                fields["time_before_exclusive"] = True
            else:
                fields[name] = moment

    for name in ("latency_min", "latency_max"):
        if value := params.get(name):
            fields[name] = _parse_number(name, value, errors)

    if search := params.get("search"):
        terms = tuple(term for term in _SEARCH_SPLIT.split(search) if term)
        if len(terms) > MAX_SEARCH_TERMS or any(
            len(term) > MAX_FILTER_LENGTH or "\x00" in term for term in terms
        ):
            errors["search"] = [
                f"search takes at most {MAX_SEARCH_TERMS} terms of at most "
                f"{MAX_FILTER_LENGTH} characters."
            ]
        fields["search_terms"] = terms

    if ordering := params.get("ordering"):
        keys = _parse_ordering(ordering, errors)
        if keys:
            fields["ordering"] = keys

    page = parse_int("page", params["page"], 1, 10**9, errors) if params.get("page") else 1
    size = default_page_size
    if params.get("page_size"):
        size = parse_int("page_size", params["page_size"], 1, MAX_PAGE_SIZE, errors) or size

    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return ListQuery(page=page or 1, page_size=size, **fields)  # type: ignore[arg-type]
