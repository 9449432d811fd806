"""``/docs`` works without internet: headless Chromium lists every operation, and no request leaves the host."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from store.migrate import upgrade_head
from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.conftest import Proc, child_env, free_port, uvicorn_cmd, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_docs_page_lists_every_operation_offline(procs: list[Proc], tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: run tests/e2e/ensure_chromium.sh (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    db_url = f"sqlite:///{tmp_path}/netreduce.db"
    upgrade_head(db_url)
    port = free_port()
    env = child_env(database_url=db_url, broker_url=f"sqla+sqlite:///{tmp_path}/broker.db")
    procs.append(Proc("api", uvicorn_cmd(port), env, tmp_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs)
    spec = httpx.get(f"{base_url}/openapi.json").json()
    operations = {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base_url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            shown = page.evaluate(
                """() => Array.from(document.querySelectorAll('.opblock')).map(e => [
                    e.querySelector('.opblock-summary-method').innerText,
                    e.querySelector('.opblock-summary-path').getAttribute('data-path')])"""
            )
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert {(method, path) for method, path in shown} == operations
    assert "netreduce" in title
    outside = [url for url in requested if not url.startswith((base_url, "data:"))]
    assert outside == [], outside
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in requested)
