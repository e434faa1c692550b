"""Field rules of the record (spec section 1) and the shared parsers of times and numbers.

Every message names the field and the rule in plain words. These functions take decoded JSON
(dicts, lists, str, int, float, bool, None) and return clean values or error maps; they never
raise for bad input.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from apm.domain.errors import ValidationFailed
from apm.domain.records import FIELDS, METHODS, REQUIRED_FIELDS, ApiRequestData

MAX_SERVICE = 100
MAX_ENDPOINT = 255
MAX_REF = 128
MAX_LATENCY = 2_147_483_647
TAGS_MAX_DEPTH = 8
TAGS_MAX_KEYS = 256
TAGS_MAX_STRING = 1024

Errors = dict[str, list[str]]


def parse_datetime(value: str) -> datetime | None:
    """ISO-8601 datetime (or date) to aware UTC; an offset is converted, a naive value is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+01:00 is before year 1 in UTC: not a datetime Python can hold.
        return None


def parse_instant(value: str) -> tuple[datetime, bool] | None:
    """A datetime or a date-only value; the flag says whether only a date was given."""
    text = value.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return datetime.combine(day, time(0), tzinfo=UTC), True
    parsed = parse_datetime(text)
    return None if parsed is None else (parsed, False)


def end_of_day(start_of_day: datetime) -> datetime:
    """The start of the next day (exclusive end); 9999-12-31 ends at the last instant Python
    can hold instead of overflowing."""
    try:
        return start_of_day + timedelta(days=1)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text(field: str, value: Any, low: int, high: int, *, trim: bool) -> tuple[str | None, str]:
    if not isinstance(value, str):
        return None, f"{field} must be a string."
    if trim:
        value = value.strip()
    if "\x00" in value:
        return None, f"{field} must not contain NUL characters."
    if len(value) < low:
        return None, f"{field} must not be blank."
    if len(value) > high:
        return None, f"{field} must be at most {high} characters."
    return value, ""


def _tags_problem(value: Any, depth: int) -> str:
    # Levels are objects and arrays: {"a": {"b": 1}} is two levels deep.
    if depth > TAGS_MAX_DEPTH and isinstance(value, dict | list):
        return f"tags must not be nested more than {TAGS_MAX_DEPTH} levels deep."
    if isinstance(value, str):
        if "\x00" in value:
            return "tags must not contain NUL characters."
        if len(value) > TAGS_MAX_STRING:
            return f"tags strings must be at most {TAGS_MAX_STRING} characters."
        return ""
    if isinstance(value, dict):
        if len(value) > TAGS_MAX_KEYS:
            return f"tags objects must have at most {TAGS_MAX_KEYS} keys."
        for key, item in value.items():
            problem = _tags_problem(key, depth) or _tags_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    if isinstance(value, list):
        if len(value) > TAGS_MAX_KEYS:
            return f"tags arrays must have at most {TAGS_MAX_KEYS} items."
        for item in value:
            problem = _tags_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    return ""


def clean_field(field: str, value: Any) -> tuple[Any, str]:
    """One field's clean value, or ('', message) when it breaks its rule."""
    if value is None and field in REQUIRED_FIELDS:
        return None, f"{field} must not be null."
    if field == "time":
        if not isinstance(value, str):
            return None, "time must be an ISO-8601 datetime string."
        parsed = parse_datetime(value)
        if parsed is None:
            return None, "time must be an ISO-8601 datetime string."
        return parsed, ""
    if field == "service":
        return _text(field, value, 1, MAX_SERVICE, trim=True)
    if field == "endpoint":
        return _text(field, value, 1, MAX_ENDPOINT, trim=True)
    if field == "method":
        upper = value.strip().upper() if isinstance(value, str) else None
        if upper not in METHODS:
            return None, f"method must be one of {', '.join(METHODS)}."
        return upper, ""
    if field == "status_code":
        number = _integer(value)
        if number is None:
            return None, "status_code must be an integer."
        if not 100 <= number <= 599:
            return None, "status_code must be a valid HTTP status (100..599)."
        return number, ""
    if field == "latency_ms":
        number = _integer(value)
        if number is None:
            return None, "latency_ms must be an integer."
        if not 0 <= number <= MAX_LATENCY:
            return None, f"latency_ms must be between 0 and {MAX_LATENCY}."
        return number, ""
    if field in ("trace_id", "user_ref"):
        if value is None:
            return None, ""
        return _text(field, value, 0, MAX_REF, trim=False)
    if field == "tags":
        if not isinstance(value, dict):
            return None, "tags must be a JSON object."
        problem = _tags_problem(value, 1)
        return (None, problem) if problem else (value, "")
    raise KeyError(field)


def clean_record(obj: Any, *, partial: bool = False) -> tuple[dict[str, Any], Errors]:
    """Validate a decoded JSON object as a record (all required fields unless `partial`).

    Returns the clean values of the known fields present (defaults filled in when not
    partial) and the errors; unknown keys are ignored.
    """
    if not isinstance(obj, dict):
        return {}, {"non_field_errors": ["Each event must be a JSON object."]}
    values: dict[str, Any] = {}
    errors: Errors = {}
    for field in FIELDS:
        if field not in obj:
            if not partial and field in REQUIRED_FIELDS:
                errors[field] = [f"{field} is required."]
            continue
        value, problem = clean_field(field, obj[field])
        if problem:
            errors[field] = [problem]
        else:
            values[field] = value
    if not partial:
        values.setdefault("trace_id", None)
        values.setdefault("user_ref", None)
        values.setdefault("tags", {})
    return values, errors


def record_from_json(obj: Any) -> ApiRequestData:
    """A whole record (POST, PUT); raises ValidationFailed naming every bad field."""
    values, errors = clean_record(obj)
    if errors:
        raise ValidationFailed(errors, "Invalid request record.")
    return ApiRequestData(**values)


def changes_from_json(obj: Any) -> dict[str, Any]:
    """The fields a PATCH changes, validated; raises ValidationFailed."""
    values, errors = clean_record(obj, partial=True)
    if errors:
        raise ValidationFailed(errors, "Invalid request record.")
    return values
