"""The dashboard with NETREDUCE_API_TOKEN set: reads work, submitting needs the token typed into its field
(kept in localStorage, sent as ``Authorization: Bearer``). Headless Chromium, uvicorn only (no worker)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from store.migrate import upgrade_head
from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.conftest import Proc, child_env, free_port, uvicorn_cmd, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "dash-token"


def test_dashboard_sends_the_token_it_was_given(procs: list[Proc], tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run tests/e2e/ensure_chromium.sh (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    db_url = f"sqlite:///{tmp_path}/netreduce.db"
    env = child_env(database_url=db_url, broker_url=f"sqla+sqlite:///{tmp_path}/broker.db", api_token=TOKEN)
    upgrade_head(db_url)
    port = free_port()
    procs.append(Proc("api", [*uvicorn_cmd(port), "--log-level", "warning"], env, tmp_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base_url}/")
            expect(page.locator("#models")).to_contain_text("digits-cnn")  # reads are open
            page.select_option("#job-technique", "prune-l1")
            expect(page.locator('#param-fields [name="amount"]')).to_have_value("0.5")
            page.click("#job-submit")
            expect(page.locator("#job-result .error")).to_contain_text("bearer token")

            page.fill("#api-token", TOKEN)
            page.dispatch_event("#api-token", "change")
            page.click("#job-submit")
            expect(page.locator("#job-result")).to_contain_text("queued")

            page.reload()
            expect(page.locator("#api-token")).to_have_value(TOKEN)  # remembered by this browser
        finally:
            browser.close()
    jobs = httpx.get(f"{base_url}/jobs").json()
    assert jobs["total"] == 1 and jobs["items"][0]["technique"] == "prune-l1"
