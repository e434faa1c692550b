"""Reading a JSON request body: content type, gzip, size limits, one decode."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException

from apm.domain.errors import PayloadTooLarge


class UnsupportedMediaType(HTTPException):
    status_code = 415


class MalformedBody(HTTPException):
    status_code = 400


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def gunzip(body: bytes, *, limit: int) -> bytes:
    """Decompress without ever holding more than `limit` bytes (a gzip bomb stops early)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise MalformedBody(detail=f"Body is not valid gzip: {error}.") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"Decompressed body is larger than {limit} bytes.")
    return data


async def read_body_bytes(request: Request, *, limit: int) -> bytes:
    """The raw body, checked for a JSON content type and gunzipped when it says so."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(
            detail="Unsupported media type: send the body as application/json."
        )
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"Body is larger than {limit} bytes.")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        return gunzip(body, limit=limit)
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(detail=f"Unsupported Content-Encoding {encoding!r}; use gzip.")
    return body


def decode_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise MalformedBody(detail=f"Malformed JSON: {error}") from None
    except RecursionError:
        # msgspec guards its recursion with the interpreter's limit: [[[[...]]]] nested a few
        # thousand levels deep stops here instead of becoming a 500.
        raise MalformedBody(detail="Malformed JSON: nested too deeply.") from None


async def read_json(request: Request, *, limit: int) -> Any:
    return decode_json(await read_body_bytes(request, limit=limit))
