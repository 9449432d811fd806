"""How errors reach the client: every 4xx/5xx body JSON-safe, 405 with the path's real ``Allow``, the services'
domain errors mapped to their status, and an overloaded or unreachable database answered 503."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.database import Overloaded
from api.service_errors import ServiceError
from store.json_safe import repaired


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(ServiceError)(service_error)
    app.exception_handler(Overloaded)(overloaded)
    app.exception_handler(PoolTimeout)(pool_exhausted)
    app.exception_handler(OperationalError)(database_down)
    app.exception_handler(DBAPIError)(database_down)
    app.exception_handler(DataError)(value_refused)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return method_not_allowed(app, request, exc)
        headers = getattr(exc, "headers", None)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        return JSONResponse(
            {"detail": repaired(jsonable_encoder(exc.detail))}, status_code=exc.status_code, headers=headers
        )

    app.exception_handler(StarletteHTTPException)(http_error)


def method_not_allowed(app: FastAPI, request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """``Allow`` lists every method of the path, as the OpenAPI document does (Starlette names one route's)."""
    template = getattr(request.scope.get("route"), "path", None)
    documented = app.openapi()["paths"].get(template, {})
    allowed = ", ".join(m.upper() for m in documented) or (exc.headers or {}).get("Allow", "")
    return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": allowed})


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with every echoed value made JSON-safe (a NaN or a lone surrogate in the input made the
    error itself unencodable: a 500)."""
    return JSONResponse({"detail": repaired(jsonable_encoder(exc.errors()))}, status_code=422)


async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse({"detail": repaired(jsonable_encoder(exc.detail))}, status_code=exc.status)


async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
    """Nothing was done for the request: the client may simply send it again after Retry-After."""
    return JSONResponse(
        {"detail": f"the server is busy ({exc}); nothing was done, retry after {exc.retry_after_s} s"},
        status_code=503,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


async def pool_exhausted(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the server is busy (no database connection was free); retry after 5 s"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def database_down(_: Request, exc: Exception) -> JSONResponse:
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return JSONResponse({"detail": f"database unavailable: {first}"}, status_code=503)


async def value_refused(_: Request, exc: Exception) -> JSONResponse:
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    detail = [{"loc": ["request"], "msg": f"a value was refused by the database: {first}", "type": "db_refused"}]
    return JSONResponse({"detail": detail}, status_code=422)
