"""Browser tests reuse the integration fixtures: every started process is stopped in teardown.

Under ``CI=true`` a missing /usr/bin/chromium fails every browser test instead of letting it skip:
``make test`` installs it first (ensure_chromium.sh), so missing means that install failed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import procs  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session", autouse=True)
def chromium_required_under_ci() -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"} and not CHROMIUM.exists():
        pytest.fail(f"CI=true and {CHROMIUM} is missing: tests/e2e/ensure_chromium.sh did not install it")
