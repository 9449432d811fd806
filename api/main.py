"""The FastAPI app: ``uvicorn api.main:app``. OpenAPI docs at /docs."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.database import Overloaded
from api.docs_page import install_docs
from api.guard import RequestGuard
from api.openapi_errors import install_openapi
from api.routers import catalog, comparison, dashboard, decision, health, jobs, models
from api.service_errors import ServiceError
from store.json_safe import repaired
from store.settings import Settings, get_settings


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """At start-up, the objects of the modules imported so far (FastAPI, SQLAlchemy, torch: ~320,000) are
    frozen out of the garbage collector's reach: they live as long as the process, and a full collection
    walking them paused every request in flight for 100-190 ms (under /comparison load)."""
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        title="netreduce",
        version="0.1.0",
        description=(
            "A model-compression lab: queue compression jobs on a base model, watch them run, and compare "
            "size, operations, accuracy and latency of every variant (`GET /comparison`, JSON or CSV)."
        ),
    )
    for module in (catalog, models, jobs, comparison, decision, health, dashboard):
        app.include_router(module.router)
    dashboard.mount_static(app)
    install_docs(app)

    def current_settings() -> Settings:
        """The settings routes see: tests override ``get_settings`` and the guard follows."""
        return app.dependency_overrides.get(get_settings, get_settings)()

    app.add_middleware(RequestGuard, settings=current_settings)
    install_openapi(app, current_settings)

    def method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """``Allow`` lists every method of the path, as the OpenAPI document does (Starlette names one route's)."""
        template = getattr(request.scope.get("route"), "path", None)
        documented = app.openapi()["paths"].get(template, {})
        allowed = ", ".join(m.upper() for m in documented) or (exc.headers or {}).get("Allow", "")
        return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": allowed})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with every echoed value made JSON-safe (a NaN or a lone surrogate in the input made the
        error itself unencodable: a 500)."""
        return JSONResponse({"detail": repaired(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return method_not_allowed(request, exc)
        headers = getattr(exc, "headers", None)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        return JSONResponse(
            {"detail": repaired(jsonable_encoder(exc.detail))}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": repaired(jsonable_encoder(exc.detail))}, status_code=exc.status)

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        """Nothing was done for the request: the client may simply send it again after Retry-After."""
        return JSONResponse(
            {"detail": f"the server is busy ({exc}); nothing was done, retry after {exc.retry_after_s} s"},
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "the server is busy (no database connection was free); retry after 5 s"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return JSONResponse({"detail": f"database unavailable: {first}"}, status_code=503)

    @app.exception_handler(DataError)
    async def value_refused(_: Request, exc: Exception) -> JSONResponse:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        detail = [{"loc": ["request"], "msg": f"a value was refused by the database: {first}", "type": "db_refused"}]
        return JSONResponse({"detail": detail}, status_code=422)

    return app


app = create_app()
