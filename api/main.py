"""The FastAPI app: ``uvicorn api.main:app``. OpenAPI docs at /docs."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.guard import RequestGuard
from api.openapi_errors import install_openapi
from api.routers import catalog, comparison, dashboard, decision, health, jobs, models
from store.settings import Settings, get_settings


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """At start-up, the objects of the modules imported so far (FastAPI, SQLAlchemy, torch: ~320,000) are
    frozen out of the garbage collector's reach: they live as long as the process, and a full collection
    walking them paused every request in flight for 100-190 ms (measured by bench.service's /comparison load)."""
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
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

    def current_settings() -> Settings:
        """The settings routes see: tests override ``get_settings`` and the guard follows."""
        return app.dependency_overrides.get(get_settings, get_settings)()

    app.add_middleware(RequestGuard, settings=current_settings)
    install_openapi(app, current_settings)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """``Allow`` lists every method of the path, as the OpenAPI document does (Starlette names one route's)."""
        template = getattr(request.scope.get("route"), "path", None)
        documented = app.openapi()["paths"].get(template, {})
        allowed = ", ".join(m.upper() for m in documented) or (exc.headers or {}).get("Allow", "")
        return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": allowed})

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
