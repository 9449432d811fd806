"""The dashboard page: rendered on the server, only local assets, the table and recommendation in the HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.seed import add_job, add_model, add_row


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.front_rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "tr" and "pareto" in (a.get("class") or "").split():
            self.front_rows += 1
        for name in ("src", "href"):
            if a.get(name):
                self.urls.append(a[name] or "")


def _seed(engine: Engine) -> str:
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    add_row(engine, train, mid, 0, label="baseline", bytes=4000, ops=600, accuracy=95.0)
    small = add_job(engine, mid, technique="quantize-dynamic")
    add_row(
        engine,
        small,
        mid,
        0,
        label="quantize-dynamic <int8>",
        technique="quantize-dynamic",
        bytes=1000,
        accuracy=94.5,
        accuracy_drop=0.5,
    )
    worse = add_job(engine, mid, technique="prune-l1")
    add_row(
        engine,
        worse,
        mid,
        0,
        label="prune-l1 (amount=0.1)",
        technique="prune-l1",
        bytes=3900,
        ops=700,
        accuracy=94.0,
        accuracy_drop=1.0,
        latency_ms_bs64=2.0,
    )
    return mid


def test_dashboard_is_server_rendered_with_local_assets_only(client: TestClient, engine: Engine) -> None:
    mid = _seed(engine)
    r = client.get("/", params={"model": mid})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(r.text)
    assert {"table", "form", "img", "script", "select"} <= page.tags
    assert page.urls and all(u.startswith(("/", "#", "?", "data:")) and not u.startswith("//") for u in page.urls)
    assert not re.search(r"https?://", r.text)
    # the table, the front and the recommendation are in the HTML itself (escaped)
    assert "quantize-dynamic &lt;int8&gt;" in r.text and "prune-l1 (amount=0.1)" in r.text
    assert page.front_rows == 2  # baseline (most accurate) and quantize-dynamic (smaller); prune-l1 is beaten
    assert "Keep <strong>quantize-dynamic &lt;int8&gt;</strong>" in r.text
    assert f"/comparison/plot.svg?base_model_id={mid}" in r.text
    for asset in {u for u in page.urls if u.startswith("/static/")}:
        got = client.get(asset)
        assert got.status_code == 200 and not re.search(r"https?://", got.text), asset
    assert (
        client.get("/static/dashboard.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_dashboard_unknown_model_still_renders(client: TestClient) -> None:
    r = client.get("/", params={"model": "nope"})
    assert r.status_code == 200 and "Unknown base model <code>nope</code>" in r.text


def test_dashboard_default_model_and_docs(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "<h2>Base models</h2>" in r.text and 'id="job-form"' in r.text
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API


def test_trials_fold_under_their_chosen_row_and_a_small_split_is_flagged(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    add_row(engine, train, mid, 0, label="baseline", accuracy=95.0, eval_samples=359)
    search = add_job(engine, mid, technique="prune-l1")
    add_row(engine, search, mid, 1, label="prune-l1 (amount=0.5)", technique="prune-l1", trial=True, accuracy=94.9)
    add_row(engine, search, mid, 2, label="prune-l1 (amount=0.9)", technique="prune-l1", trial=True, accuracy=60.0)
    add_row(engine, search, mid, 3, label="prune-l1 (amount=0.5) [chosen]", technique="prune-l1", accuracy=94.9)
    html = client.get("/", params={"model": mid}).text
    assert f'class="trials-toggle" data-job="{search}" aria-expanded="false"' in html and "▸ 2" in html
    assert html.count(f'<tr class="trial" data-trial-of="{search}" hidden>') == 2
    assert html.index("[chosen]") < html.index("prune-l1 (amount=0.9)")  # trials come right after their row
    warning = re.search(r'<p class="warning" id="split-warning">(.*?)</p>', html, re.S)
    assert warning and "too small for a 1-point budget" in warning.group(1)
    add_row(engine, train, mid, 9, label="baseline", accuracy=95.0, eval_samples=100_000)  # a larger split
    assert 'id="split-warning"' not in client.get("/", params={"model": mid}).text
