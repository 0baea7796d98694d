"""The review pages in a real browser (Playwright driving Debian's chromium) against a real
`vigil serve`: log in, worklist, study view, overlays, region hover, a decision with a mark
and a comment, its amendment, the database rows; and the refusals people would meet.

At 1280×800 and 1920×1080 the controls are checked to be on screen without a sideways scroll,
and screenshots of the worklist and the study view are saved under test-output/screenshots/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from sqlalchemy import select

from service.auth import service as auth_service
from service.auth.roles import Role
from service.db import session_scope
from service.orm import AccessLogEntry, Review
from service.runtime import Runtime, open_runtime
from service.settings import Environment, Settings
from service.training.phantom.generator import PhantomOptions, generate
from tests.conftest import POSTGRES_URL, _truncate_postgres
from tests.live_server import LiveServer, live_server
from tests.review_support import (
    PASSWORD,
    add_people,
    model_env,
    review_settings,
    store,
    wait_for_analyses,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
SIZES = [(1280, 800), (1920, 1080)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's chromium at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run installs it)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


@dataclass(frozen=True)
class Site:
    server: LiveServer
    runtime: Runtime
    people: dict[Role, str]
    analyses: list[dict[str, Any]]


@pytest.fixture(scope="module")
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """A served Vigil with three analysed phantom radiographs (lung zones from the shipped
    lung model) and one person per role."""
    root = tmp_path_factory.mktemp("browser")
    if POSTGRES_URL:
        database_url: str = request.getfixturevalue("postgres_migrated")
        _truncate_postgres(database_url)
    else:
        shutil.copy(request.getfixturevalue("sqlite_template"), root / "vigil.db")
        database_url = f"sqlite:///{root / 'vigil.db'}"
    base = Settings(
        environment=Environment.TEST,
        var_dir=root,
        database_url=database_url,
        archive_dir=root / "archive",
    )
    settings = review_settings(base, root, lungs=True)
    runtime = open_runtime(settings, migrate=False)
    people = add_people(runtime, list(Role))
    with session_scope(runtime.session_factory) as session:
        _token, token = auth_service.create_token(session=session, role=Role.INTEGRATION)
    generate(PhantomOptions(n=3, seed=7), root / "phantoms", workers=1)
    files = sorted((root / "phantoms" / "dicom").glob("*.dcm"))
    studies = [pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files]
    try:
        with live_server(settings, root / "server.log", model_env(settings)) as server:
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                store(client, token, [f.read_bytes() for f in files])
                analyses = wait_for_analyses(client, token, studies)
            yield Site(server=server, runtime=runtime, people=people, analyses=analyses)
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_page(browser: Any, site: Site, size: tuple[int, int] = SIZES[0], state: Any = None) -> Any:
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]},
        base_url=site.server.base_url,
        storage_state=state,
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    return page


def log_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/review/")  # anonymous: sent to the login page, and back after it
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form button[type=submit]")


def canvas_picture(page: Any) -> str:
    """Return the study canvas as a data URL, after the browser has drawn pending frames."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return str(page.eval_on_selector("#viewer", "canvas => canvas.toDataURL()"))


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    path = SCREENSHOTS / f"{name}-{width}x{height}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"


# What a person at this window size could not see: a page wider than the window, or a control
# outside it even after scrolling the way the page lets them (not sideways, and not a part
# whose overflow is hidden).
OFF_SCREEN_JS = """(selectors) => {
    const problems = [];
    const root = document.documentElement;
    if (root.scrollWidth > innerWidth) problems.push(`page is ${root.scrollWidth} px wide`);
    const pageFixed = getComputedStyle(document.body).overflowY === "hidden";
    for (const selector of selectors) {
        const element = document.querySelector(selector);
        if (!element) { problems.push(`${selector} missing`); continue; }
        element.scrollIntoView({ block: "nearest", inline: "nearest" });
        const box = element.getBoundingClientRect();
        // A pixel of slack: scrolled into view, an edge may land a fraction past the window's.
        if (box.width === 0 || box.left < -1 || box.right > innerWidth + 1
            || box.top < -1 || box.bottom > innerHeight + 1) {
            const where = `x ${box.left}–${box.right}, y ${box.top}–${box.bottom}`;
            problems.push(`${selector} at ${where}`);
        }
        let sideways = scrollX !== 0, hidden = scrollY !== 0 && pageFixed;
        for (let up = element.parentElement; up; up = up.parentElement) {
            sideways ||= up.scrollLeft !== 0;
            hidden ||= up.scrollTop !== 0 && getComputedStyle(up).overflowY === "hidden";
        }
        if (sideways) problems.push(`${selector} needs a sideways scroll`);
        if (hidden) problems.push(`${selector} lies where the page cannot scroll`);
    }
    return problems;
}"""


def assert_fits(page: Any, selectors: list[str]) -> None:
    """Assert the controls are visible at this window size and the image gets most of it."""
    problems = page.evaluate(OFF_SCREEN_JS, selectors)
    size = page.viewport_size
    assert problems == [], f"{size['width']}×{size['height']}: {problems}"
    canvas = page.locator("#viewer")
    if canvas.count():
        box = canvas.bounding_box()
        assert box["width"] >= size["width"] / 2 and box["height"] >= size["height"] / 2, box


WORKLIST_PARTS = [".filters", "#worklist thead", "#worklist tbody tr a.row-link"]
STUDY_PARTS = [
    "#viewer",
    "#wl-preset",
    "#overlay-choice",
    "#opacity",
    "#region-table",
    "#decision-form .choices",
    "#label-field",
    "#comment",
    "#decision-form button[type=submit]",
]


def reviews(site: Site) -> list[Review]:
    with site.runtime.session_factory() as session:
        return list(session.scalars(select(Review).order_by(Review.created_at)))


def test_a_clinician_reviews_a_study_from_the_worklist_and_amends_the_decision(
    site: Site, browser: Any
) -> None:
    page = new_page(browser, site)
    log_in(page, site.people[Role.CLINICIAN])
    page.wait_for_selector("#worklist")
    assert page.locator("#worklist tbody tr").count() == 3
    assert page.locator("#worklist tbody tr").first.locator(".status").inner_text() == "unreviewed"
    assert_fits(page, WORKLIST_PARTS)
    shoot(page, "worklist")

    page.locator("a.row-link").first.click()
    page.wait_for_selector("#viewer[data-first-overlay-ms]", state="attached")
    assert "not for clinical use" in page.inner_text(".disclaimer")
    assert page.inner_text("#model-name") == "vigil-test-classifier"
    assert "Grad-CAM" in page.inner_text("#legend")
    page.wait_for_timeout(200)  # let the region outlines arrive before the screenshot's hover
    shoot(page, "study")
    assert_fits(page, STUDY_PARTS)

    # Dragging on the image changes window and level; a preset sets them again.
    image_window = page.inner_text("#wl-readout")
    box = page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 150, steps=4)
    page.mouse.up()
    assert page.inner_text("#wl-readout") != image_window
    page.select_option("#wl-preset", "wide")
    page.select_option("#wl-preset", "default")
    assert page.inner_text("#wl-readout") == image_window

    # Overlays and opacity change what is drawn; the legend follows the overlay.
    before = canvas_picture(page)
    page.check('input[name="overlay"][value="probability"]')
    page.locator("#legend").get_by_text("finding probability").wait_for()
    assert canvas_picture(page) != before
    page.locator("#viewer").focus()
    page.keyboard.press("o")  # cycles on to the lung fields
    page.locator("#legend").get_by_text("patient's right lung").wait_for()
    page.fill("#opacity", "90")
    assert page.inner_text("#opacity-value") == "90 %"
    opaque = canvas_picture(page)
    page.fill("#opacity", "20")
    assert canvas_picture(page) != opaque

    # Hovering a region row outlines it on the image, and leaving removes the outline.
    plain = canvas_picture(page)
    row = page.locator("#region-table tbody tr").first
    assert row.get_attribute("data-region") == "right upper lung zone"
    row.hover()
    assert "active" in (row.get_attribute("class") or "")
    assert canvas_picture(page) != plain
    page.locator("#opacity").hover()
    assert canvas_picture(page) == plain

    # A mark placed by clicking the image, a comment, D for disagree, Enter to record.
    page.check('input[name="tool"][value="mark"]')
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.inner_text("#marks-count") == "1"
    page.select_option("#label-field", "no finding")
    page.fill("#comment", "Skin fold, not a nodule.")
    page.locator("#viewer").focus()
    page.keyboard.press("u")
    assert page.is_checked('input[name="decision"][value="uncertain"]')
    page.keyboard.press("d")
    assert page.is_checked('input[name="decision"][value="disagree"]')
    page.keyboard.press("Enter")
    page.wait_for_selector(".saved")
    assert page.locator("#history article").count() == 1
    assert "Skin fold" in page.inner_text("#history")

    # Amend: the earlier decision stays, marked as amended; the new one points at it.
    page.click("button.amend")
    assert (
        page.is_visible("#amending") and page.input_value("#comment") == "Skin fold, not a nodule."
    )
    assert page.inner_text("#marks-count") == "1"
    page.locator("#viewer").focus()
    page.keyboard.press("a")
    page.select_option("#label-field", "nodule")
    page.fill("#comment", "On second look: a nodule.")
    page.click("#decision-form button[type=submit]")
    page.wait_for_selector(".saved")
    assert page.locator("#history article").count() == 2
    assert page.locator("#history article.superseded").count() == 1
    assert "On second look" in page.locator("#history article").first.inner_text()
    shoot(page, "study-history")

    first, second = reviews(site)
    assert (first.decision.value, first.finding_label) == ("disagree", "no finding")
    assert (second.decision.value, second.finding_label, second.amends_pk) == (
        "agree",
        "nodule",
        first.id,
    )
    assert second.username == site.people[Role.CLINICIAN] and second.channel == "page"
    assert (first.comment, second.comment) == (
        "Skin fold, not a nodule.",
        "On second look: a nodule.",
    )
    assert first.marks == second.marks
    [mark] = second.marks
    analysed = next(a for a in site.analyses if a["id"] == str(first.analysis_pk))
    # The click was in the middle of the canvas, where the fitted image's centre lies.
    assert abs(mark["x"] - 256) < 3 and abs(mark["y"] - 256) < 3, mark
    assert analysed["regions"][0]["name"] == "right upper lung zone"
    assert first.time_to_decision_ms is not None and first.time_to_decision_ms > 0
    with site.runtime.session_factory() as session:
        actions = set(session.scalars(select(AccessLogEntry.action)))
    assert {"review.worklist", "review.study", "review.image", "review.overlay"} <= actions
    assert "review.create" in actions

    # J goes on to the next study of the worklist.
    here = page.url
    page.locator("#viewer").focus()
    page.keyboard.press("j")
    page.wait_for_url(lambda url: url != here and "/review/analyses/" in url)
    assert page.errors == []

    # The same pages at 1920×1080.
    state = page.context.storage_state()
    wide = new_page(browser, site, SIZES[1], state)
    wide.goto("/review/")
    assert_fits(wide, WORKLIST_PARTS)
    shoot(wide, "worklist")
    wide.locator("a.row-link").first.click()
    wide.wait_for_selector("#viewer[data-first-overlay-ms]", state="attached")
    assert_fits(wide, STUDY_PARTS)
    wide.locator("#region-table tbody tr").nth(3).hover()
    shoot(wide, "study")
    assert wide.errors == []
    wide.context.close()
    page.context.close()


def test_refusals_say_what_went_wrong(site: Site, browser: Any) -> None:
    count = len(reviews(site))
    analysis_id = site.analyses[0]["id"]

    page = new_page(browser, site)
    log_in(page, site.people[Role.CLINICIAN], password="wrong password!")
    assert page.inner_text("#login-error") == "Wrong username or password."

    # A decision form that lost its CSRF token is refused, and says so.
    log_in(page, site.people[Role.CLINICIAN])
    page.goto(f"/review/analyses/{analysis_id}")
    page.wait_for_selector("#viewer[data-first-overlay-ms]", state="attached")
    page.eval_on_selector('#decision-form input[name="csrf_token"]', "input => input.remove()")
    page.check('input[name="decision"][value="agree"]')
    page.select_option("#label-field", "nodule")
    page.click("#decision-form button[type=submit]")
    page.wait_for_selector("[data-error-detail]")
    assert "without its security token (CSRF)" in page.inner_text("[data-error-detail]")
    page.context.close()

    # An auditor lands on the audit pages, cannot open studies, cannot decide.
    auditor = new_page(browser, site)
    log_in(auditor, site.people[Role.AUDITOR])
    auditor.wait_for_url("**/review/audit")
    auditor.goto("/review/me")
    assert "Your role does not review studies" in auditor.inner_text("main")
    auditor.goto(f"/review/analyses/{analysis_id}")
    assert "may not open the review worklist and studies" in auditor.inner_text(
        "[data-error-detail]"
    )
    # Post a decision form with the auditor's own valid CSRF token (from the logout form).
    auditor.goto("/review/me")
    auditor.eval_on_selector(
        'form[action="/review/logout"]',
        """(form, id) => {
            form.action = `/review/analyses/${id}/decisions`;
            for (const [name, value] of [["decision", "agree"], ["label", "nodule"]]) {
                const input = document.createElement("input");
                Object.assign(input, { type: "hidden", name, value });
                form.append(input);
            }
            form.submit();
        }""",
        analysis_id,
    )
    auditor.wait_for_selector("[data-error-detail]")
    assert "your role (auditor) may not record review decisions" in auditor.inner_text(
        "[data-error-detail]"
    )
    auditor.context.close()
    assert len(reviews(site)) == count
