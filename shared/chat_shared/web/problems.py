"""RFC 9457 problem+json answers for every error, including the unexpected ones."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from chat_shared.errors import ChatError, RateLimited

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"https://chat.example/problems/{code or phrase.lower().replace(' ', '-')}",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if extra:
        body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo the input back: it may hold a password.
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]


async def _chat_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    if exc.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return problem_response(exc.status, exc.detail, title=exc.title, code=exc.code, headers=headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, str(exc.detail), headers=headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        "The request does not match the schema.",
        code="invalid",
        extra={"errors": _validation_errors(exc)},
    )


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "Internal error; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChatError, _chat_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_SCHEMA: dict[str, Any] = {
    "content": {
        PROBLEM_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    }
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem+json answers."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"description": HTTPStatus(status).phrase, **PROBLEM_SCHEMA}
    return out
