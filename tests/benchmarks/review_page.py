"""Study view latency in a real browser: from navigation to the first overlay painted (run by
hand, not by pytest).

Serves N analysed phantom radiographs with `vigil serve` on loopback, logs in with Debian's
chromium (Playwright) and opens each study page. The page marks `vigil:first-overlay` (and
sets `data-first-overlay-ms` on the canvas) once the browser has painted the image with its
first overlay; `performance.now()` at that moment is the time since the navigation started,
so it includes the HTML request, the scripts, the image and overlay requests and the drawing.

Three passes over the same studies, each printed with p50 / p90 / max:
- cold:   each study's view files deleted first, so the server decodes the DICOM file and
          draws the overlay while the browser waits (a study opened out of the blue);
- flow:   the worklist, then J from study to study, no view file made beforehand (what a
          clinician does: the server makes the next studies' files while one is read);
- again:  the studies revisited in the same tab (the browser's cache holds the image and
          the overlay).

Usage: .venv/bin/python tests/benchmarks/review_page.py [--studies 20] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from service.auth import service as auth_service  # noqa: E402
from service.auth.roles import Role  # noqa: E402
from service.db import session_scope  # noqa: E402
from service.runtime import open_runtime  # noqa: E402
from service.settings import Environment, Settings  # noqa: E402
from service.training.phantom.generator import PhantomOptions, generate  # noqa: E402
from tests.live_server import live_server  # noqa: E402
from tests.review_support import (  # noqa: E402
    PASSWORD,
    add_people,
    model_env,
    review_settings,
    store,
    wait_for_analyses,
)
from tests.test_review_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

GOAL_MS = 300.0
TIMINGS_JS = """() => {
    const [nav] = performance.getEntriesByType("navigation");
    const end = (part) => {
        const hit = performance.getEntriesByType("resource").find((e) => e.name.includes(part));
        return hit ? hit.responseEnd : null;
    };
    const mark = (name) => {
        const [hit] = performance.getEntriesByName(name);
        return hit ? hit.startTime : null;
    };
    return {
        html: nav.responseEnd, image: end("/image.bin"), overlay: end("/overlays/"),
        script: mark("vigil:script"), image_loaded: mark("vigil:image-loaded"),
        overlay_loaded: mark("vigil:overlay-loaded"),
    };
}"""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(name: str, rows: list[dict[str, Any]]) -> str:
    first = [r["first"] for r in rows]
    keys = ("html", "script", "overlay", "image", "image_loaded", "overlay_loaded")
    parts = {k: [r[k] for r in rows if r.get(k) is not None] for k in keys}
    phases = "  ".join(f"{k} {statistics.median(v):.0f}" for k, v in parts.items() if v)
    verdict = "meets" if statistics.median(first) <= GOAL_MS else "MISSES"
    return (
        f"  {name:6s} n={len(first):2d}  first overlay p50 {statistics.median(first):6.0f} ms  "
        f"p90 {percentile(first, 90):6.0f}  max {max(first):6.0f}  goal ≤ {GOAL_MS:.0f} ms: "
        f"{verdict}\n           p50 of when each step ended (ms): {phases}"
    )


def open_study(page: Any, url: str, *, key: str | None = None) -> dict[str, Any]:
    """Navigate (to ``url``, or by pressing ``key`` on the current study) and return the
    first-overlay time with when the HTML, image and overlay responses ended (ms)."""
    if key is None:
        page.goto(url, wait_until="commit")
    else:
        here = page.url
        page.locator("#viewer").focus()
        page.keyboard.press(key)
        page.wait_for_url(lambda u: u != here, wait_until="commit")
    page.wait_for_selector("#viewer[data-first-overlay-ms]", state="attached", timeout=60_000)
    first = float(page.eval_on_selector("#viewer", "c => c.dataset.firstOverlayMs"))
    return {"first": first, "url": page.url, **page.evaluate(TIMINGS_JS)}


def logged_in_page(browser: Any, base_url: str, person: str) -> Any:
    """Return a page of a fresh browser context, logged in, showing the worklist."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, base_url=base_url)
    page = context.new_page()
    page.goto("/review/login")
    page.fill("#username", person)
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_selector("#worklist")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048, help="phantom side in pixels")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"needs chromium at {CHROMIUM} (apt-get install chromium)")

    workdir = Path(tempfile.mkdtemp(prefix="vigil-review-bench-"))
    base = Settings(
        environment=Environment.TEST,
        var_dir=workdir,
        database_url=f"sqlite:///{workdir / 'vigil.db'}",
        log_level="WARNING",
    )
    settings = review_settings(base, workdir, lungs=True)
    runtime = open_runtime(settings)
    person = add_people(runtime, [Role.CLINICIAN])[Role.CLINICIAN]
    with session_scope(runtime.session_factory) as session:
        _token, token = auth_service.create_token(session=session, role=Role.INTEGRATION)
    runtime.close()
    started = time.perf_counter()
    generate(PhantomOptions(n=args.studies, seed=11, size=args.size), workdir / "ph", workers=2)
    files = sorted((workdir / "ph" / "dicom").glob("*.dcm"))
    studies = [pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files]
    print(
        f"{args.studies} phantom CR studies {args.size}×{args.size}, made in "
        f"{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    env = model_env(settings) | {"VIGIL_LOG_LEVEL": "WARNING"}
    try:
        with live_server(settings, workdir / "server.log", env) as server:
            with httpx.Client(base_url=server.base_url, timeout=120) as client:
                started = time.perf_counter()
                for f in files:
                    store(client, token, [f.read_bytes()])
                analyses = wait_for_analyses(client, token, studies, timeout=1800)
            print(
                f"analysed in {time.perf_counter() - started:.0f} s "
                f"(model {analyses[0]['model']['name']}, overlays {analyses[0]['overlays']})"
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                results = settings.results_path
                ids = [a["id"] for a in analyses]

                # Cold: each study opened once, its view files deleted just before.
                page = logged_in_page(browser, server.base_url, person)
                cold = []
                for analysis_id in ids:
                    page.goto("about:blank")
                    page.wait_for_timeout(800)  # the previous page's prefetching ends
                    shutil.rmtree(results / analysis_id / "review", ignore_errors=True)
                    cold.append(open_study(page, f"/review/analyses/{analysis_id}"))
                page.context.close()

                # Flow: from the worklist, J after J, with no view file made beforehand.
                for analysis_id in ids:
                    shutil.rmtree(results / analysis_id / "review", ignore_errors=True)
                page = logged_in_page(browser, server.base_url, person)
                page.wait_for_timeout(500)  # the worklist prefetches its first rows
                first = page.locator("a.row-link").first.get_attribute("href")
                flow = [open_study(page, first)]
                for _ in range(len(ids) - 1):
                    page.wait_for_timeout(300)  # reading time; the next study is prepared
                    flow.append(open_study(page, "", key="j"))

                # Again: the same tab revisits them (the browser's cache is warm).
                again = [open_study(page, r["url"]) for r in flow]
                browser.close()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("Navigation → first overlay painted (chromium, 1920×1080, loopback):")
    print(summary("cold", cold))
    print(summary("flow", flow))
    print(summary("again", again))


if __name__ == "__main__":
    main()
