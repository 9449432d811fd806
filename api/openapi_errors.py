"""The OpenAPI document says what the API really answers: the error statuses every operation can give,
and the bearer token where ``NETREDUCE_API_TOKEN`` requires it (so /docs shows an Authorize button).

Errors the request guard (api/guard.py) or an exception handler produce never pass through a route's
declaration, so they are added here for every operation they apply to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.guard import OPEN_PATHS, UPLOAD_PATHS
from compress.techniques.base import list_techniques
from store.settings import Settings

SCHEME = "bearerToken"
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"title": "Detail", "description": "What was wrong (text, or a list of errors)."}},
}
VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}
NO_NUL = "^[^\\x00]*$"
"""Every string the API takes is refused (422) when it holds a NUL character: the schema says so."""


def _forbid_nul(schema: Any) -> None:
    """Add the NUL-free pattern to every plain string schema inside ``schema`` (in place)."""
    if isinstance(schema, dict):
        plain = not any(k in schema for k in ("pattern", "format", "enum", "const"))
        if schema.get("type") == "string" and plain:
            schema["pattern"] = NO_NUL
        for value in schema.values():
            _forbid_nul(value)
    elif isinstance(schema, list):
        for item in schema:
            _forbid_nul(item)


def _name_techniques(schemas: dict[str, Any]) -> None:
    """``technique`` (a job's, a step's) takes a registered name: the schema lists them (GET /techniques)."""
    names = [t.name for t in list_techniques()]
    for model in ("JobCreate", "Step"):
        prop = schemas.get(model, {}).get("properties", {}).get("technique")
        for branch in [prop, *(prop or {}).get("anyOf", [])]:
            if isinstance(branch, dict) and branch.get("type") == "string":
                branch["enum"] = names


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Add the error responses and the security requirements to a generated OpenAPI document (in place)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    if "HTTPValidationError" not in schemas:  # an app whose routes take no parameters
        schemas["ValidationError"] = {
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {"type": "array", "items": {}},
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        }
        schemas["HTTPValidationError"] = {
            "type": "object",
            "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}},
        }
    error = {"$ref": "#/components/schemas/Error"}
    _name_techniques(schemas)
    _forbid_nul(schemas)
    if settings.api_token:
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "NETREDUCE_API_TOKEN",
        }
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            _forbid_nul(op.get("parameters", []))
            responses = op["responses"]
            for code, declared in responses.items():  # e.g. a route's bare `409: {}`
                if code[0] in "45" and "content" not in declared:
                    declared["content"] = {"application/json": {"schema": error}}
            responses.setdefault("422", _response("Invalid input (also a NUL byte anywhere)", VALIDATION_REF))
            responses.setdefault(
                "503", _response("Busy (retry after Retry-After seconds) or the database is unreachable", error)
            )
            names = {p.get("name") for p in op.get("parameters", [])}
            if "{" in path or "base_model_id" in names:
                responses.setdefault("404", _response("Not found (the message lists what exists)", error))
            if "requestBody" in op:
                limit = settings.max_upload_bytes if path in UPLOAD_PATHS else settings.max_request_bytes
                responses.setdefault("400", _response("The body could not be parsed (not UTF-8, broken form)", error))
                responses.setdefault("413", _response(f"The body is larger than {limit} bytes", error))
            if settings.api_token and path not in OPEN_PATHS and (method.upper() != "GET" or settings.protect_reads):
                op["security"] = [{SCHEME: []}]
                responses.setdefault("401", _response("No or a wrong bearer token", error))
    return schema


def install_openapi(app: FastAPI, settings: Callable[[], Settings]) -> None:
    """Replace ``app.openapi`` with one that documents errors and security for the current settings."""
    cache: dict[tuple[bool, bool, int, int], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        s = settings()
        key = (bool(s.api_token), s.protect_reads, s.max_request_bytes, s.max_upload_bytes)
        if key not in cache:
            generated = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            cache[key] = document(generated, s)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]
