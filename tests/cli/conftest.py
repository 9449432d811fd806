"""CLI client tests reuse the API tests' migrated SQLite file (module-scoped settings and engine)."""

from tests.api.conftest import data_root, engine, settings  # noqa: F401
