"""Headless Chromium (Debian's) through Selenium, used as a person uses the Dagster UI: the asset
graph and the latest evaluation_report materialization with its metrics and ROC plot; then
Materialize on trained_model's page, followed to its run's page until the run succeeds; then a
backfill of three days of raw_data and cleaned_features launched from the catalog's partition
dialog, followed to its backfill page until it completes. Screenshots are kept under
$FLYWHEEL_TEST_ARTIFACTS (or the test's tmp_path); the test prints where."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PARTITIONS, flywheel_files
from tests.servers import DagsterStack

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ASSETS = ("raw_data", "cleaned_features", "trained_model", "evaluation_report", "deployed_model")
# The run page's status tag: a spinner while the run is on, one of these icons once it has ended.
RUN_ENDED_ICONS = ("run_success", "run_failed", "run_canceled")
# The backfill page's status tag while the daemon still works on it.
BUSY = {"", "Requested", "In progress", "Canceling"}


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


def wait_for(driver, check, timeout: float, what: str, shot: Path, interval: float = 1.0):
    """``check()`` until it is truthy; on timeout, a screenshot and an AssertionError naming it.
    An element that React replaced while ``check`` read it counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(interval)
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
    """A fresh browser profile gets the "Join the Dagster community" dialog, a few seconds after
    its first page has loaded (so it is looked for again before each click and screenshot)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    skips = driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
    for button in skips:
        with contextlib.suppress(StaleElementReferenceException):
            click(driver, button)
    if skips:
        time.sleep(0.5)  # the dialog fades out


def screenshot(driver, shot: Path) -> Path:
    dismiss_welcome(driver)
    driver.save_screenshot(str(shot))
    return shot


def elements(driver, xpath: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.XPATH, xpath)


def click_when_ready(driver, xpath: str, timeout: float, what: str, shot: Path):
    """Waits for a shown, enabled element at ``xpath`` and clicks it; when React has replaced
    it in between (a stale element: no click happened), it looks again."""

    def clicked():
        dismiss_welcome(driver)
        ready = [e for e in elements(driver, xpath) if e.is_displayed() and e.is_enabled()]
        if ready:
            click(driver, ready[0])
            return ready[0]
        return None

    return wait_for(driver, clicked, timeout, what, shot, interval=0.5)


def toast(driver, prefix: str, shot: Path) -> tuple[str, Any]:
    """The toast (an ``li`` of the notifications list) that starts with ``prefix``, once shown:
    the word after ``prefix`` (a run's or backfill's id) and its View link (an ``a`` drawn as a
    button). A toast goes away after about 4 s, so it is looked for often."""

    def found():
        for item in elements(driver, f"//li[starts-with(normalize-space(), '{prefix} ')]"):
            view = item.find_elements("xpath", ".//*[self::a or self::button][.='View']")
            text = " ".join((item.get_attribute("textContent") or "").split())
            shown = re.fullmatch(rf"{prefix} (\S+?) ?View", text)
            if view and shown and view[0].is_displayed():
                return shown.group(1), view[0]
        return None

    return wait_for(driver, found, 30, f"the toast {prefix!r}", shot, interval=0.2)


def follow(driver, view, link: str) -> None:
    """Clicks a toast's View; if the toast has just gone (a stale element), opens its link."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        click(driver, view)
    except StaleElementReferenceException:
        driver.get(link)


def latest_materialization_run(stack: DagsterStack, asset: str) -> str | None:
    data = stack.graphql(
        """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) {
             ... on AssetNode { assetMaterializations(limit: 1) { runId } } } }""",
        {"k": {"path": [asset]}},
    )
    events = data["assetNodeOrError"]["assetMaterializations"]
    return events[0]["runId"] if events else None


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
    screenshot(browser, graph_shot)

    # The events view of evaluation_report opens its latest materialization: the metrics table
    # is inline; the plots are markdown behind "Show Markdown".
    report_shot = artifacts / "evaluation_report.png"
    browser.get(f"{stack.url}/assets/evaluation_report?view=events")
    wait_for(browser, lambda: "roc_auc" in source() and "pr_auc" in source(), 90,
             "the metrics of the latest materialization", report_shot)  # fmt: skip
    dismiss_welcome(browser)
    assert nightly_run["runId"][:8] in source(), "the latest materialization is the nightly run's"
    screenshot(browser, artifacts / "evaluation_report_metrics.png")
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
    screenshot(browser, report_shot)
    for shot in (graph_shot, report_shot):
        assert shot.stat().st_size > 10_000, shot


def test_materialize_trained_model_from_its_page(
    stack: DagsterStack,
    backfill: dict[str, Any],
    nightly_run: dict[str, Any],  # its clock labelled the days training needs (conftest)
    browser,
    artifacts: Path,
):
    """Materialize on the asset's page starts a run; the toast's View leads to the run's page,
    which shows the run succeed. Every field of trained_model's config has a default, so a plain
    click launches at once, with no Launchpad (default training takes seconds on this data)."""
    from selenium.webdriver.common.by import By

    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    failed_shot = artifacts / "materialize_failed.png"
    before = {r["runId"] for r in stack.runs()}
    browser.get(f"{stack.url}/assets/trained_model")
    materialize = "//button[normalize-space()='Materialize']"
    wait_for(browser, lambda: elements(browser, materialize), 90,
             "trained_model's page", failed_shot)  # fmt: skip
    dismiss_welcome(browser)
    click_when_ready(browser, materialize, 30, "trained_model's Materialize button", failed_shot)

    # user_feedback, trained_model's other upstream asset, is materialized in the shared stack
    # only if an earlier test did so; if not, the UI first asks, naming user_feedback (and never
    # cleaned_features, which the backfill filled). Either shows after a fade-in: what is not
    # displayed yet has no text to read.
    confirm = "//*[@role='dialog']//button[normalize-space()='Confirm']"
    launched = "//li[starts-with(normalize-space(), 'Launched run ')]"
    asked = wait_for(
        browser,
        lambda: [e for e in elements(browser, f"{launched} | {confirm}") if e.is_displayed()],
        30,
        "a launched run or the warning about upstream assets",
        failed_shot,
        interval=0.2,
    )
    if asked[0].tag_name == "button":
        dialog = asked[0].find_element(By.XPATH, "./ancestor::*[@role='dialog'][1]")
        warning = " ".join((dialog.get_attribute("textContent") or "").split())
        screenshot(browser, artifacts / "materialize_upstream_warning.png")
        assert "have not been materialized" in warning and "user_feedback" in warning, warning
        assert "cleaned_features" not in warning, warning
        click_when_ready(browser, confirm, 10, "the warning's Confirm button", failed_shot)
    short_id, view = toast(browser, "Launched run", failed_shot)
    link = view.get_attribute("href") or ""
    ours = [r["runId"] for r in stack.runs() if r["runId"] not in before]
    assert [r[:8] for r in ours] == [short_id], (short_id, ours)  # one click, one new run
    run_id = ours[0]
    assert link.endswith(f"/runs/{run_id}"), link
    follow(browser, view, link)
    wait_for(browser, lambda: f"/runs/{run_id}" in browser.current_url, 30,
             f"the page of run {short_id}", failed_shot)  # fmt: skip

    # The header's status tag: a spinner while the run is on, then an icon and its word.
    icons = " or ".join(f"@aria-label='{icon}'" for icon in RUN_ENDED_ICONS)
    tag = f"//*[@role='img'][{icons}]/following-sibling::*[1]"
    status = wait_for(
        browser,
        lambda: [text for e in elements(browser, tag) if (text := e.text.strip())],
        240,
        f"run {short_id} to end (the status tag of its page)",
        failed_shot,
    )
    shot = artifacts / "materialize_run_succeeded.png"
    screenshot(browser, shot)
    run = stack.run(run_id)
    assert status[0] == "Success" and run["status"] == "SUCCESS", (status, run, stack.logs())
    assert "RUN_SUCCESS" in browser.page_source  # the run's event log, on the same page
    assert latest_materialization_run(stack, "trained_model") == run_id
    assert shot.stat().st_size > 10_000, shot


def test_backfill_of_three_days_from_the_partition_dialog(
    stack: DagsterStack, backfill: dict[str, Any], browser, artifacts: Path
):
    """In the catalog: tick raw_data and cleaned_features, Materialize selected, type a range of
    three days in the partition dialog, Launch backfill; the toast's View leads to the
    backfill's page, which shows it succeed (the daemon looks at backfills every 30 s)."""
    from selenium.webdriver.common.keys import Keys

    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    days = PARTITIONS[-3:]
    failed_shot = artifacts / "backfill_failed.png"
    browser.get(f"{stack.url}/assets")

    def row(asset: str) -> str:
        """The catalog's row of the asset: the nearest box around its link with a checkbox."""
        return f"//a[@href='/assets/{asset}']/ancestor::div[.//input[@type='checkbox']][1]"

    rows = f"{row('raw_data')} | {row('cleaned_features')}"
    wait_for(browser, lambda: len(elements(browser, rows)) == 2, 90, "the catalog's rows",
             failed_shot)  # fmt: skip
    dismiss_welcome(browser)
    for asset in ("raw_data", "cleaned_features"):
        # The input is hidden under its drawn box: the label around both takes the click.
        click_when_ready(browser, f"{row(asset)}//label[.//input[@type='checkbox']]", 10,
                         f"the checkbox of {asset}", failed_shot)  # fmt: skip
        box = f"{row(asset)}//input[@type='checkbox']"
        wait_for(browser, lambda b=box: elements(browser, b)[0].is_selected(), 10,
                 f"{asset} to be ticked", failed_shot)  # fmt: skip
    selected = "//button[starts-with(normalize-space(), 'Materialize selected (2)')]"
    click_when_ready(browser, selected, 10, "the button Materialize selected (2)", failed_shot)

    dialog = "//*[@role='dialog'][.//*[normalize-space()='Launch runs to materialize 2 assets']]"
    field = click_when_ready(browser, f"{dialog}//input[@type='text']", 30,
                             "the partition selection dialog", failed_shot)  # fmt: skip
    field.send_keys(f"[{days[0]}...{days[-1]}]", Keys.TAB)
    wait_for(browser, lambda: elements(browser, f"{dialog}//*[normalize-space()='3 partitions']"),
             10, "the dialog to count 3 partitions", failed_shot)  # fmt: skip
    screenshot(browser, artifacts / "backfill_dialog.png")
    launched_at = time.time()
    click_when_ready(browser, f"{dialog}//button[normalize-space()='Launch backfill']", 10,
                     "the button Launch backfill", failed_shot)  # fmt: skip
    backfill_id, view = toast(browser, "Created backfill", failed_shot)
    follow(browser, view, view.get_attribute("href") or "")
    wait_for(browser, lambda: f"/runs/b/{backfill_id}" in browser.current_url, 30,
             f"the page of backfill {backfill_id}", failed_shot)  # fmt: skip

    tag = "//div[normalize-space()='Status' and not(*)]/following-sibling::*[1]"
    status = wait_for(
        browser,
        lambda: [text for e in elements(browser, tag) if (text := e.text.strip()) not in BUSY],
        300,
        f"backfill {backfill_id} to end (the status tag of its page)",
        failed_shot,
    )
    shot = artifacts / "backfill_completed.png"
    screenshot(browser, shot)

    result = stack.graphql(
        """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
             ... on PartitionBackfill { status runs(limit: 100) { runId status }
               assetBackfillData { rootTargetedPartitions { ranges { start end } }
                 assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
                   assetKey { path } numPartitionsTargeted numPartitionsInProgress
                   numPartitionsMaterialized numPartitionsFailed } } } } } }""",
        {"id": backfill_id},
    )["partitionBackfillOrError"]
    assert status[0] == "Succeeded", (status, result, stack.logs())
    assert result["status"] == "COMPLETED_SUCCESS", result
    assert result["runs"] and all(r["status"] == "SUCCESS" for r in result["runs"]), result
    data = result["assetBackfillData"]
    assert data["rootTargetedPartitions"]["ranges"] == [{"start": days[0], "end": days[-1]}]
    counts = {s["assetKey"]["path"][0]: s for s in data["assetBackfillStatuses"]}
    assert counts.keys() == {"raw_data", "cleaned_features"}, counts
    # cleaned_features[D] reads raw_data[D-31..D], so a backfill of raw_data's days also targets
    # cleaned_features' days after them, up to the newest (none here: the range ends there).
    assert counts["raw_data"]["numPartitionsTargeted"] == 3, counts
    assert counts["cleaned_features"]["numPartitionsTargeted"] >= 3, counts
    for c in counts.values():
        assert c["numPartitionsMaterialized"] == c["numPartitionsTargeted"], counts
        assert c["numPartitionsFailed"] == 0 and c["numPartitionsInProgress"] == 0, counts
    for asset in ("raw_data", "cleaned_features"):
        files = flywheel_files(stack, asset)
        rewritten = {f.stem for f in files if f.stat().st_mtime >= launched_at}
        assert set(days) <= rewritten, (asset, sorted(rewritten))
    assert shot.stat().st_size > 10_000, shot
