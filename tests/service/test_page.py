"""The web page at / in headless Chromium (the Debian `chromium`, driven by Playwright), against a real server.

What the page shows is checked against the same request sent to the API, so the tests hold for any tiny
random model: the page must show the server's order, ranks, moves, scores and timings, not its own.
Every wait is Playwright's auto-waiting (`expect`, bounded by WAIT), never a sleep: no outcome depends on speed.

Screenshots go to a temporary folder; `BICROSS_SCREENSHOTS=docs/screenshots` writes the committed ones.
Chromium missing is a failure that says how to install it, never a skip (CI installs it in .ci/run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serving import WAIT

QUERY = "capital of germany"
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}
INSTALL = ("install it with `apt-get install -y --no-install-recommends chromium` (Debian; .ci/run does this) "
           "or point BICROSS_CHROMIUM at a Chromium binary; Playwright's own browser download is not used")


def chromium_path() -> str:
    """The Chromium binary the tests drive: $BICROSS_CHROMIUM, else `chromium` on PATH."""
    path = os.environ.get("BICROSS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        pytest.fail(f"no Chromium found for the web page tests: {INSTALL}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]' (it drives the Debian chromium)", pytrace=False)
    expect.set_options(timeout=WAIT * 1000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("BICROSS_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(page, folder: Path, name: str, max_height: int = 1400) -> Path:
    """A PNG of the page's top `max_height` pixels, palette-quantized so the committed ones stay small."""
    from PIL import Image

    path = folder / f"{name}.png"
    width, height = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": min(height, max_height)})
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


class Page:
    """A browser page on the served app that records every URL it requests."""

    def __init__(self, browser, served, viewport: dict[str, int]) -> None:
        self.served = served
        self.context = browser.new_context(viewport=viewport, device_scale_factor=1)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT * 1000)
        self.requested: list[str] = []
        self.page.on("request", lambda request: self.requested.append(request.url))
        self.page.goto(served.url + "/")

    def search(self, expect, query: str, searches: int) -> None:
        """Type the query, press Enter, and wait for the page to draw its `searches`-th result."""
        self.page.fill("#query", query)
        self.page.press("#query", "Enter")
        expect(self.page.locator("#results")).to_have_attribute("data-searches", str(searches))

    def set_knobs(self, config: int, **knobs: object) -> None:
        """Set configuration `config` (0 = A, 1 = B): first_stage, rerank, and the number fields."""
        fieldset = self.page.locator("fieldset.config").nth(config)
        for name, value in knobs.items():
            field = fieldset.locator(f"[data-knob={name}]")
            if name == "first_stage":
                field.select_option(str(value))
            elif name == "rerank":
                field.set_checked(bool(value))
            else:
                field.fill(str(value))

    def hits(self, column: str = ".column") -> list[dict[str, str]]:
        return self.page.locator(f"{column} .hit").evaluate_all("""hits => hits.map(h => ({
            id: h.dataset.id, rank: h.dataset.rank, first: h.dataset.firstStageRank, diff: h.dataset.diff,
            move: h.querySelector('.move').textContent, title: h.querySelector('.title').firstChild.textContent,
            rerank: h.querySelector('.score-rerank').textContent, first_score: h.querySelector('.score-first').textContent,
            year: (h.querySelector('.metadata [data-field=year]') || {}).textContent}))""")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def served(serve, tiny_collection):
    with serve(tiny_collection, allow_anonymous_writes=True) as running:
        yield running


@pytest.fixture
def desktop(browser, served):
    page = Page(browser, served, DESKTOP)
    yield page
    page.close()


def api_search(served, **body: object) -> dict:
    response = served.client.post("/search", json={"query": QUERY, **body})
    assert response.status_code == 200, response.text
    return response.json()


def expected_move(hit: dict) -> str:
    move = hit["first_stage_rank"] - hit["rank"]
    return f"▲ {move}" if move > 0 else f"▼ {-move}" if move < 0 else "="


def shown_number(text: str) -> float:
    return float(text.rsplit(" ", 1)[1])


def test_a_query_shows_the_reranked_hits_with_rank_moves_scores_and_stage_timings(desktop, expect, screenshots):
    expected = api_search(desktop.served, top_k=6, top_n=6)
    assert any(h["rank"] != h["first_stage_rank"] for h in expected["hits"]), "the query should move some hit"
    page = desktop.page
    expect(page.locator("#status")).to_contain_text("tiny: 6 documents")
    desktop.set_knobs(0, top_k=6, top_n=6)
    desktop.search(expect, QUERY, 1)
    shown = desktop.hits()
    assert [h["id"] for h in shown] == [h["id"] for h in expected["hits"]]
    assert [h["rank"] for h in shown] == [str(h["rank"]) for h in expected["hits"]]
    assert [h["first"] for h in shown] == [str(h["first_stage_rank"]) for h in expected["hits"]]
    assert [h["move"] for h in shown] == [expected_move(h) for h in expected["hits"]]
    assert {h["move"][0] for h in shown} & {"▲", "▼"}
    for hit, want in zip(shown, expected["hits"], strict=True):
        assert shown_number(hit["rerank"]) == pytest.approx(want["rerank_score"], abs=6e-4)
        assert shown_number(hit["first_score"]) == pytest.approx(want["first_stage_score"], abs=6e-4)
        assert hit["title"] == (want["title"] or want["id"])
    stages = page.locator(".stages li").evaluate_all("items => items.map(i => i.dataset.stage)")
    assert set(stages) == set(expected["timings_ms"]) >= {"encode", "dense", "bm25", "fuse", "rerank", "total"}
    expect(page.locator(".stages [data-stage=rerank]")).to_contain_text(" ms")
    assert all(url.startswith(desktop.served.url + "/") for url in desktop.requested), desktop.requested
    save_screenshot(page, screenshots, "search")


def test_a_filter_narrows_the_list_and_a_bad_one_is_explained(desktop, expect, screenshots):
    page = desktop.page
    desktop.set_knobs(0, top_k=6, top_n=6)
    desktop.search(expect, QUERY, 1)
    before = {h["id"]: int(h["year"].split()[-1]) for h in desktop.hits()}
    assert len(before) == 6 and min(before.values()) < 2012
    page.fill("#filters", "year>=2012")
    page.press("#filters", "Enter")
    expect(page.locator("#results")).to_have_attribute("data-searches", "2")
    expected = api_search(desktop.served, top_k=6, top_n=6, filters=["year>=2012"])
    shown = desktop.hits()
    assert [h["id"] for h in shown] == [h["id"] for h in expected["hits"]]
    assert {h["id"] for h in shown} == {i for i, year in before.items() if year >= 2012}
    save_screenshot(page, screenshots, "filter")
    page.fill("#filters", "year>>2012")
    page.press("#filters", "Enter")
    expect(page.locator("#error")).to_contain_text("cannot read the filter 'year>>2012'")
    assert len(desktop.hits()) == len(shown)  # the last good results stay


def test_the_ab_view_runs_two_configurations_and_marks_where_they_differ(desktop, expect, screenshots):
    a_knobs, b_knobs = {"first_stage": "hybrid", "rerank": True}, {"first_stage": "bm25", "rerank": False}
    a = api_search(desktop.served, top_k=6, top_n=4, **a_knobs)["hits"]
    b = api_search(desktop.served, top_k=6, top_n=4, **b_knobs)["hits"]
    rank_a, rank_b = ({h["id"]: h["rank"] for h in hits} for hits in (a, b))

    def diff(hit_id: str, rank: int, other: dict[str, int]) -> str:
        return "only" if hit_id not in other else "rank" if other[hit_id] != rank else "same"

    want_a = [(i, diff(i, r, rank_b)) for i, r in rank_a.items()]
    want_b = [(i, diff(i, r, rank_a)) for i, r in rank_b.items()]
    assert {d for _, d in want_a + want_b} - {"same"}, "the two configurations should differ on this query"
    page = desktop.page
    page.check("#ab")
    expect(page.locator("fieldset.config").nth(1)).to_be_visible()
    desktop.set_knobs(0, top_k=6, top_n=4, **a_knobs)
    desktop.set_knobs(1, top_k=6, top_n=4, **b_knobs)
    desktop.search(expect, QUERY, 1)
    assert [(h["id"], h["diff"]) for h in desktop.hits("[data-config=A]")] == want_a
    assert [(h["id"], h["diff"]) for h in desktop.hits("[data-config=B]")] == want_b
    only = [i for i, d in want_a if d == "only"]
    if only:
        expect(page.locator(f"[data-config=A] .hit[data-id='{only[0]}'] .diff")).to_have_text("not in B")
    assert all(h["move"] == "=" for h in desktop.hits("[data-config=B]"))  # no reranker: first-stage order
    shared = len(set(rank_a) & set(rank_b))
    expect(page.locator("#ab-summary")).to_contain_text(f"A and B share {shared} of 4 hits")
    expect(page.locator("[data-config=B] .config-description")).to_have_text("bm25 · no rerank · top_k 6 · hits 4")
    save_screenshot(page, screenshots, "ab")


def test_the_page_fits_a_phone_screen(browser, served, expect, screenshots):
    phone = Page(browser, served, PHONE)
    try:
        page = phone.page
        page.check("#ab")
        phone.set_knobs(1, first_stage="bm25", rerank=False)
        phone.search(expect, "the city museum with many people and a very long query " * 3, 1)
        expect(page.locator("[data-config=B] .hit").first).to_be_visible()
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1] == PHONE["width"], f"horizontal scroll: content {width[0]} px wide"
        boxes = page.locator(".hit, fieldset.config, #query").evaluate_all(
            "nodes => nodes.map(n => n.getBoundingClientRect()).map(r => [r.left, r.right])")
        assert all(left >= 0 and right <= PHONE["width"] for left, right in boxes)
        save_screenshot(page, screenshots, "phone")
    finally:
        phone.close()


def test_document_text_is_shown_as_text_never_as_html(desktop, expect):
    title = '<img src=x onerror="window.injected=1">Tag soup'
    added = desktop.served.client.post("/documents", json={"documents": [
        {"id": "html", "title": title, "text": "<b>capital</b> of germany <script>window.injected=2</script>"}]})
    assert added.status_code == 200, added.text
    desktop.set_knobs(0, top_k=7, top_n=7)
    desktop.search(expect, QUERY, 1)
    hit = desktop.page.locator(".hit[data-id=html]")
    expect(hit.locator(".title")).to_contain_text(title)
    expect(hit.locator(".snippet")).to_contain_text("<b>capital</b> of germany <script>")
    assert hit.locator("img, b, script").count() == 0
    assert desktop.page.evaluate("window.injected") is None


def test_the_api_key_is_kept_in_the_session_and_sent_as_a_bearer_token(serve, tiny_collection, browser, expect,
                                                                      monkeypatch):
    monkeypatch.setenv("BICROSS_PAGE_TEST_KEYS", "viewer-key:read")
    with serve(tiny_collection, api_keys_env="BICROSS_PAGE_TEST_KEYS") as running:
        keyed = Page(browser, running, DESKTOP)
        try:
            page = keyed.page
            expect(page.locator("#status")).to_contain_text("this server needs an API key")
            page.fill("#api-key", "viewer-key")
            page.click("#key-form button[type=submit]")
            expect(page.locator("#status")).to_contain_text("tiny: 6 documents")
            assert page.evaluate("sessionStorage.getItem('bicross.apiKey')") == "viewer-key"
            with page.expect_request(lambda r: r.url.endswith("/search")) as sent:
                keyed.search(expect, QUERY, 1)
            assert sent.value.headers["authorization"] == "Bearer viewer-key"
            page.reload()  # the key survives a reload of the tab
            expect(page.locator("#status")).to_contain_text("tiny: 6 documents")
        finally:
            keyed.close()


def test_the_page_and_its_files_are_served_with_a_strict_content_policy(served):
    page = served.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for path in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        assert served.client.get(path).status_code == 200, path
    assert "innerHTML" not in served.client.get("/static/app.js").text
    assert "http" not in page.text.replace("http-equiv", "")  # no external resource in the page
    assert "/" not in served.client.get("/openapi.json").json()["paths"]
