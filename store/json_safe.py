"""Values that JSON (and PostgreSQL text) can always carry: what to refuse at the door, how to repair.

Python's ``json`` reads ``NaN``, ``Infinity``, ``1e400`` (as inf) and ``"\\udfff"`` (a lone UTF-16
surrogate, which is not a Unicode character) without complaint; none of them can be written back as
JSON or UTF-8, so one such value stored in a row made every later read of it fail.
"""

from __future__ import annotations

import math
from typing import Any

MAX_JSON_INT = 2**63 - 1
"""Integers beyond a signed 64-bit column are refused (a database or encoder would fail on them)."""


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL byte (\\u0000)"
    if _has_surrogate(text):
        return "is not valid Unicode (a lone surrogate such as \\udfff)"
    return None


def find_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(where, what)`` of the first value JSON/UTF-8 cannot carry, else None. Keys are checked too."""
    here = path or "(value)"
    if isinstance(value, str):
        what = _string_problem(value)
        return (here, what) if what else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (here, "is not a finite number (NaN, Infinity or out of range)")
    if isinstance(value, int):
        return None if abs(value) <= MAX_JSON_INT else (here, f"is out of range (|n| > {MAX_JSON_INT})")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _string_problem(key):
                return (shown(where), f"has a key that {_string_problem(key)}")
            found = find_problem(item, where)
            if found:
                return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_problem(item, f"{path}[{i}]")
            if found:
                return found
    return None


def shown(text: str) -> str:
    """``text`` safe to echo: NULs and lone surrogates written as escapes."""
    return "".join(f"\\u{ord(ch):04x}" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in text)


def repaired(value: Any) -> Any:
    """``value`` made JSON-safe: bad characters escaped as text (``\\udfff``), non-finite numbers None."""
    if isinstance(value, str):
        return shown(value) if _string_problem(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if abs(value) <= MAX_JSON_INT else None
    if isinstance(value, dict):
        return {repaired(k) if isinstance(k, str) else k: repaired(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repaired(v) for v in value]
    return value
