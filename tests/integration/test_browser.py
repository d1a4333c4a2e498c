"""Headless Chromium (Debian's) through Selenium: the asset graph, then the latest
evaluation_report materialization with its metrics and ROC plot. Screenshots are kept under
$FLYWHEEL_TEST_ARTIFACTS (or the test's tmp_path); the test prints where."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import DagsterStack

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ASSETS = ("raw_data", "cleaned_features", "trained_model", "evaluation_report", "deployed_model")


@pytest.fixture
def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are required in CI (apt-get install"
                        " chromium chromium-driver)")  # fmt: skip
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1920,1200",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(
        executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = os.environ.get("FLYWHEEL_TEST_ARTIFACTS")
    folder = Path(root) / request.node.name if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser artifacts (screenshots) in {folder}")  # noqa: T201
    return folder


def wait_for(driver, check, timeout: float, what: str, shot: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    driver.save_screenshot(str(shot))
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; see {shot}")


def click(driver, element) -> None:
    """A click; when something moves over the element (the graph relayouts), a DOM click."""
    from selenium.common.exceptions import WebDriverException

    try:
        element.click()
    except WebDriverException:
        driver.execute_script(
            "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", element
        )


def dismiss_welcome(driver) -> None:
    """A fresh browser profile gets the "Join the Dagster community" dialog first."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        click(driver, button)


def expand_groups(driver, limit: int = 10) -> None:
    """Expands the collapsed asset groups of the graph, one by one (the layout moves)."""
    from selenium.webdriver.common.by import By

    for _ in range(limit):
        folds = driver.find_elements(By.CSS_SELECTOR, "[role=img][aria-label='unfold_more']")
        if not folds:
            return
        click(driver, folds[0])
        time.sleep(1)


def test_ui_shows_assets_and_the_latest_evaluation_report(
    stack: DagsterStack, nightly_run: dict[str, Any], browser, artifacts: Path
):
    from selenium.webdriver.common.by import By

    assert nightly_run["status"] == "SUCCESS"
    source = lambda: browser.page_source  # noqa: E731
    graph_shot = artifacts / "asset_graph.png"
    browser.get(f"{stack.url}/asset-groups")  # the global asset lineage graph
    wait_for(browser, lambda: "training" in source() and "deployment" in source(), 90,
             "the asset groups in the graph", graph_shot)  # fmt: skip
    dismiss_welcome(browser)
    expand_groups(browser)

    def all_drawn() -> bool:
        # The graph draws only what is in view: zoom out until every asset is drawn.
        if all(a in source() for a in ASSETS):
            return True
        for zoom in browser.find_elements(By.CSS_SELECTOR, "[role=img][aria-label='zoom_out']"):
            click(browser, zoom)
        return False

    wait_for(browser, all_drawn, 60, f"{ASSETS} in the graph", graph_shot)
    browser.save_screenshot(str(graph_shot))

    # The events view of evaluation_report opens its latest materialization: the metrics table
    # is inline; the plots are markdown behind "Show Markdown".
    report_shot = artifacts / "evaluation_report.png"
    browser.get(f"{stack.url}/assets/evaluation_report?view=events")
    wait_for(browser, lambda: "roc_auc" in source() and "pr_auc" in source(), 90,
             "the metrics of the latest materialization", report_shot)  # fmt: skip
    dismiss_welcome(browser)
    assert nightly_run["runId"][:8] in source(), "the latest materialization is the nightly run's"
    browser.save_screenshot(str(artifacts / "evaluation_report_metrics.png"))
    show = wait_for(
        browser,
        lambda: browser.find_elements(
            By.XPATH, "//tr[.//span[normalize-space()='plots']]//a[contains(., 'Show Markdown')]"
        ),
        30,
        "the plots entry",
        report_shot,
    )
    click(browser, show[0])
    roc = wait_for(
        browser,
        lambda: [
            i
            for i in browser.find_elements(By.CSS_SELECTOR, "img[alt='roc']")
            if (i.get_attribute("src") or "").startswith("data:image/png")
            and (i.get_property("naturalWidth") or 0) > 100
        ],
        60,
        "the ROC plot",
        report_shot,
    )
    browser.execute_script("arguments[0].scrollIntoView();", roc[0])
    browser.save_screenshot(str(report_shot))
    for shot in (graph_shot, report_shot):
        assert shot.stat().st_size > 10_000, shot
