"""Reads a request body within a size limit, gunzipping if needed, and parses its JSON."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from kizuna_ingest.domain.errors import InvalidCall, TooLarge


async def read_json(request: Request, limit: int) -> Any:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise TooLarge(f"the body is larger than {limit // 1024} KB")
    body = bytes(raw)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        body = gunzip(body, limit)
    if not body.strip():
        raise InvalidCall("(body)", "is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidCall("(body)", f"is not valid JSON: {error}") from error


def gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidCall("(body)", "is not valid gzip") from error
    if len(data) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"the uncompressed body is larger than {limit // 1024} KB")
    return data
