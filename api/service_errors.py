"""What the API's services raise; one exception handler (``api.main``) turns each into its HTTP answer.

Services never import FastAPI: they say what went wrong in domain terms, the edge says it in HTTP.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base of the services' errors; ``status`` is the HTTP status the edge answers with."""

    status = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail


class InvalidInput(ServiceError):
    """422: ``detail`` is a list of ``{"loc", "msg", "type", ...}`` like FastAPI's own validation errors."""

    status = 422


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


def unprocessable(loc: list[Any], msg: str, type_: str, **extra: Any) -> InvalidInput:
    return InvalidInput([{"loc": loc, "msg": msg, "type": type_, **extra}])
