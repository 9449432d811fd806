"""End to end in a real headless Chromium (Debian's package, driven by Playwright; never a browser download).

The embedded default stack in a temp folder: `alembic upgrade head` on a SQLite file, uvicorn, and a real
Celery worker on kombu's SQLite broker. The browser loads the dashboard, submits a job with the form
generated from the technique's params schema, sees it finish and its row appear in the comparison table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from store.migrate import upgrade_head
from tests.integration.conftest import Proc, child_env, free_port, uvicorn_cmd, wait_healthy, worker_cmd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = os.environ.get("NETREDUCE_E2E_SCREENSHOT")  # e.g. /tmp/dashboard.png to look at the page


@pytest.fixture
def stack(procs: list[Proc], tmp_path: Path) -> str:
    """API + worker on the embedded default, in tmp_path; returns the base URL."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run tests/e2e/ensure_chromium.sh (apt-get install chromium)")
    db_url = f"sqlite:///{tmp_path}/netreduce.db"
    queue = f"e2e-{os.getpid()}"
    env = child_env(
        database_url=db_url,
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.db",
        artifact_dir=str(tmp_path / "artifacts"),
        queue=queue,
        latency_runs="2",
        torch_threads="1",
        progress_interval_s="0.2",
        calibration_samples="200",
    )
    upgrade_head(db_url)
    port = free_port()
    procs.append(Proc("api", [*uvicorn_cmd(port), "--log-level", "warning"], env, tmp_path))
    procs.append(Proc("worker", worker_cmd(queue), env, tmp_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(base_url, procs, timeout_s=90)
    return base_url


def _numbers(texts: list[str]) -> list[float]:
    return [float(t.replace(",", "")) for t in texts if t != "—"]


def test_dashboard_submit_job_and_see_its_row(stack: str, procs: list[Proc]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base_url = stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page_errors: list[str] = []
            outside: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.on("request", lambda r: None if r.url.startswith((base_url, "data:")) else outside.append(r.url))
            page.goto(f"{base_url}/")
            expect(page.locator("header h1")).to_have_text("netreduce")
            expect(page.locator("#models")).to_contain_text("digits-cnn")

            # the form is generated from GET /techniques: prune-l1's fields, defaults filled in
            page.select_option("#job-technique", "prune-l1")
            amount = page.locator('#param-fields [name="amount"]')
            expect(amount).to_have_value("0.5")
            expect(page.locator('#param-fields select[name="retrain"] option')).to_have_count(3)

            # a refused job shows the server's reason
            amount.fill("1.5")
            page.click("#job-submit")
            expect(page.locator("#job-result ul.error")).to_contain_text("params.amount")

            amount.fill("0.3")
            page.select_option('#param-fields [name="retrain"]', "keep")
            page.click("#job-submit")
            expect(page.locator("#job-result")).to_contain_text("queued")
            match = re.search(r"#(\d+)", page.inner_text("#job-result"))
            assert match, page.inner_text("#job-result")
            job_id = match.group(1)

            # live progress by polling, until the job is finished (it trains the preset model first)
            row = f'#jobs-body tr[data-job-id="{job_id}"]'
            page.wait_for_selector(row, timeout=10_000)
            done = ", ".join(f'{row}[data-status="{s}"]' for s in ("succeeded", "failed", "cancelled"))
            page.wait_for_selector(done, timeout=180_000)
            status = page.get_attribute(row, "data-status")
            assert status == "succeeded", page.inner_text(row) + "\n" + "\n".join(p.tail() for p in procs)

            # its row appears in the table (after the baseline), the front is marked, a recommendation is shown
            body = page.locator("#comparison-body")
            expect(body.locator("tr")).to_have_count(2, timeout=15_000)
            expect(body.locator("tr").nth(1)).to_contain_text("prune-l1")
            expect(body.locator("tr").nth(1).locator("td").last).to_have_text(job_id)
            assert body.locator("tr.pareto").count() >= 1
            expect(page.locator("#rec-body .keep")).to_contain_text("Keep")
            assert page.locator("#comparison-body tr.chosen").count() == 1

            # sortable by a click on any column
            page.click('#comparison-table th[data-key="bytes"]')
            col = list(page.locator("#comparison-table th").evaluate_all("(ths) => ths.map((t) => t.dataset.key)"))
            cells = body.locator(f"td:nth-child({col.index('bytes') + 1})")
            values = _numbers(cells.all_inner_texts())
            assert values == sorted(values)
            page.click('#comparison-table th[data-key="bytes"]')
            values = _numbers(cells.all_inner_texts())
            assert values == sorted(values, reverse=True)
            expect(page.locator('#comparison-table th[data-key="bytes"]')).to_have_class(re.compile("sorted-desc"))

            # a search: its chosen row in the table, its trials folded under it (▸ N), shown on a click
            import httpx

            search = {"base_model_id": "digits-cnn", "technique": "prune-l1",
                      "params": {"search": True, "retrain": "keep", "scope": "global"}}  # fmt: skip
            sid = httpx.post(f"{base_url}/jobs", json=search, timeout=30).json()["id"]
            toggle = page.locator(f'#comparison-body .trials-toggle[data-job="{sid}"]')
            expect(toggle).to_be_visible(timeout=120_000)
            trials = page.locator(f'#comparison-body tr.trial[data-trial-of="{sid}"]')
            n = int(toggle.inner_text().split()[-1])
            assert n >= 2 and trials.count() == n
            expect(trials.first).to_be_hidden()
            toggle.click()
            expect(trials.first).to_be_visible()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(page.locator("#comparison-body tr:not(.trial)")).to_have_count(3)

            # the trade-off plot (SVG endpoint) is drawn with the new row
            page.wait_for_function(
                "() => { const i = document.querySelector('#plot-img'); return i.complete && i.naturalWidth > 0; }"
            )
            if SCREENSHOT:
                page.screenshot(path=SCREENSHOT, full_page=True)
            assert page_errors == [] and outside == []
        finally:
            browser.close()
