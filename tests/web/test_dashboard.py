"""The dashboard end to end in a real headless Chromium (Debian's, driven by playwright):
every page loads with data, the map, a plot with interval bands and the alert list render,
an admin approves a plan by clicking. Screenshots are kept (path printed) for a person."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from served import ADMIN_TOKEN, READ_TOKEN, served, served_acting  # noqa: E402

from shadowcast.api.server import ApiServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts() -> Path:
    d = Path(os.environ.get("SHADOWCAST_ARTIFACTS", REPO / "var" / "test-artifacts")) / "web"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(f"\nscreenshots: {d}")
    return d


def _serve(state: Any) -> Iterator[tuple[str, Any]]:
    server = ApiServer(state, state.settings.api)
    url = server.start()
    try:
        yield url, state
    finally:
        server.stop()
        state.store.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    yield from _serve(served(tmp_path_factory.mktemp("web")))


@pytest.fixture(scope="module")
def acting_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A replay in auto mode: its plans are applied and judged (``action_outcomes``)."""
    yield from _serve(served_acting(tmp_path_factory.mktemp("web-acting")))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _login(browser: Any, url: str, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/plans")
    assert page.url.startswith(url + "/login"), "pages need a token"
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/plans")
    page.errors = errors
    return page


def _pixels(page: Any, rgb: tuple[int, int, int], tol: int, alpha: tuple[int, int]) -> int:
    """Pixels of the first chart's canvas within ``tol`` of colour ``rgb`` whose alpha lies
    strictly inside ``alpha`` (the canvas itself is transparent)."""
    return int(page.evaluate(
        """([r, g, b, tol, lo, hi]) => {
            const c = document.querySelector("figure.chart canvas");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (Math.abs(d[i]-r) < tol && Math.abs(d[i+1]-g) < tol
                    && Math.abs(d[i+2]-b) < tol && d[i+3] > lo && d[i+3] < hi) n++;
            return n;
        }""",
        [*rgb, tol, *alpha],
    ))  # fmt: skip


def _band_pixels(page: Any, rgb: tuple[int, int, int]) -> int:
    """Half-transparent pixels of colour ``rgb`` on the first chart (a band's fill)."""
    return _pixels(page, rgb, 12, (10, 120))


def test_every_page_renders_with_data(site: tuple[str, Any], browser: Any, artifacts: Path) -> None:
    url, state = site
    page = _login(browser, url, READ_TOKEN)
    # the map: one line per link, coloured, and the slider moves over the horizons
    page.goto(url + "/")
    lines = page.locator("#map line.link")
    assert lines.count() == len(state.service.link_names)
    last = lines.first.get_attribute("stroke")
    page.eval_on_selector(
        "#horizon", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }"
    )
    assert page.inner_text("#horizon-label") == "now"
    assert lines.first.get_attribute("stroke") in lines.first.get_attribute("data-colours")
    assert last and last.startswith("#")
    page.screenshot(path=str(artifacts / "01-map.png"), full_page=True)
    # a link's plot with its bands: measured, past predictions with a band, the forecast
    page.goto(url + "/links/" + "A-%3EB")
    page.wait_for_selector("figure.chart.rendered canvas")
    assert _band_pixels(page, (123, 97, 201)) > 500  # the past predictions' band
    assert _band_pixels(page, (208, 98, 27)) > 20  # the latest forecast's band
    assert "predicted 15m ahead" in page.inner_text("figure.chart")
    page.screenshot(path=str(artifacts / "02-link.png"), full_page=True)
    page.goto(url + "/applications")
    assert page.locator("figure.chart.rendered canvas").count() == len(state.service.s.classes)
    page.screenshot(path=str(artifacts / "03-applications.png"), full_page=True)
    # alerts with lead time and outcome
    page.goto(url + "/alerts")
    assert page.title() == "shadowcast · alerts"  # the tuning section once, in the page
    rows = page.locator("#alert-list tbody tr")
    assert rows.count() >= 1 and "confirmed" in page.inner_text("#alert-list")
    # the alert tuner's precision/recall curve per link class, over p
    curves = page.locator("#tuning figure.chart.rendered canvas")
    assert curves.count() == len(state.service.s.rule.class_names)
    assert "precision" in page.inner_text("#tuning") and "recall" in page.inner_text("#tuning")
    page.screenshot(path=str(artifacts / "04-alerts.png"), full_page=True)
    page.goto(url + "/tunnels")
    assert page.locator("#tunnel-list tbody tr").count() >= 1
    assert "ms" in page.inner_text("#tunnel-list thead")
    page.screenshot(path=str(artifacts / "05-tunnels.png"), full_page=True)
    page.goto(url + "/accuracy")
    page.wait_for_selector("figure.chart.rendered canvas")
    page.screenshot(path=str(artifacts / "06-accuracy.png"), full_page=True)
    # a read token sees plans without the buttons
    page.goto(url + "/plans")
    assert page.locator("button.approve").count() == 0
    assert page.errors == []


def test_admin_approves_a_plan_by_clicking(
    site: tuple[str, Any], browser: Any, artifacts: Path
) -> None:
    url, state = site
    page = _login(browser, url, ADMIN_TOKEN)
    button = page.locator("article.state-proposed button.approve").first
    plan_id = page.locator("article.state-proposed").first.get_attribute("id")[len("plan-") :]
    page.screenshot(path=str(artifacts / "07-plans.png"), full_page=False)
    button.click()
    page.wait_for_selector("#done")
    assert f"approve: plan {plan_id} is applied" in page.inner_text("#done")
    assert "applied" in page.inner_text(f"#plan-{plan_id} .badge")
    page.screenshot(path=str(artifacts / "08-approved.png"), full_page=False)
    audit = state.store.read("audit").to_pylist()
    assert [(r["token"], r["action"], r["target"], r["status"]) for r in audit][-1] == (
        "ops", "approve", plan_id, "ok")  # fmt: skip
    assert page.errors == []


def _line_pixels(page: Any, rgb: tuple[int, int, int]) -> int:
    """Opaque pixels of colour ``rgb`` on the first chart's canvas (a series' line/points)."""
    return _pixels(page, rgb, 16, (200, 256))


def test_actions_page_plots_predicted_against_realised_mlu(
    acting_site: tuple[str, Any], browser: Any, artifacts: Path
) -> None:
    from shadowcast.api.feedback import actions

    url, state = acting_site
    rows = actions(state, 24 * 7)["actions"]
    assert rows, "the acting replay applied and judged plans"
    page = _login(browser, url, READ_TOKEN)
    page.goto(url + "/actions")
    page.wait_for_selector("figure.chart.rendered canvas")
    assert page.locator("#action-list tbody tr").count() == len(rows)
    legend = page.inner_text("figure.chart")
    first = rows[0]["horizon"]
    assert f"predicted {first}" in legend and f"realised {first}" in legend
    page.screenshot(path=str(artifacts / "09-actions.png"), full_page=True)
    assert _line_pixels(page, (31, 59, 115)) > 50  # the first horizon's series drawn
    assert page.errors == []
