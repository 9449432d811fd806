"""GET /healthz: the API answers, the database and the broker are reachable (503 naming what is down)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import BrokerCheckDep, SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "database or broker unreachable"}})
def healthz(session: SessionDep, settings: SettingsDep, check_broker: BrokerCheckDep) -> JSONResponse:
    checks: dict[str, Any] = {"api": "ok"}
    try:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        check_broker(settings.broker_url)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}: {str(exc)[:200]}"
    down = [k for k, v in checks.items() if v != "ok"]
    if down:
        return JSONResponse({"detail": f"unreachable: {', '.join(down)}", **checks}, status_code=503)
    return JSONResponse({"status": "ok", **checks})
