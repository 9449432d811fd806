"""Browser tests reuse the integration fixtures: every started process is stopped in teardown."""

from tests.integration.conftest import procs  # noqa: F401
