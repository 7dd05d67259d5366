"""The release console in a real browser: Debian's chromium driven by Playwright, against the real api-server.

Sign in through Airflow's login page, open "Releases" from Airflow's navigation, see a run stage by stage,
approve as an approver, see the refusal another user gets, see the metrics. Screenshots of each page go to
docs/ui/ when RELEASE_ORCHESTRATOR_SCREENSHOTS=1 (docs/ui.md shows them).

Browsers cannot be downloaded here: the tests use the chromium that `.ci/run` installs from Debian
(`apt-get install chromium`), and are skipped, saying so, where there is none.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.helpers import approve_in_turn, wait_for, wait_for_run, wait_for_task_state
from tests.integration.test_example_release import APPROVAL as EXAMPLE_APPROVAL
from tests.integration.test_example_release import PIPELINE as EXAMPLE
from tests.integration.test_example_release import push as push_example
from tests.integration.test_execution_modes import push as push_modes
from tests.integration.test_release_console import APPROVAL, GATE, Session, start_waiting_run

pytestmark = pytest.mark.integration

CHROMIUM = (
    os.environ.get("RELEASE_ORCHESTRATOR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "ui"
MODES = "em-transition"  # a QUEUED pipeline: its stages have doors

if not CHROMIUM:
    pytest.skip(
        "no chromium: install Debian's (apt-get install chromium) or set RELEASE_ORCHESTRATOR_CHROMIUM to one; "
        ".ci/run installs it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt: run make venv")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser, airflow_env, user: str):
    """A page of a new browser context, signed in through Airflow's own login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=airflow_env.airflow_url)
    page = context.new_page()
    page.goto("/releases/")  # not signed in: Airflow's login page, which comes back here afterwards
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(airflow_env.users[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/releases/**")
    return page


def console_transitions(airflow_env, dag_id: str) -> list[dict]:
    return Session(airflow_env, "developer").get(f"/releases/api/pipelines/{dag_id}/transitions").json()["transitions"]


def task(api, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def screenshot(page, name: str) -> None:
    if os.environ.get("RELEASE_ORCHESTRATOR_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def waiting_run(api, reviewer_api) -> str:
    # A pusher chooses the commit URL a webhook carries: this one must not become a link.
    return start_waiting_run(api, reviewer_api, "browser", commit_url="javascript:alert(document.domain)")


def test_sign_in_find_releases_in_airflows_navigation_and_see_a_run_stage_by_stage(browser, airflow_env, waiting_run):
    page = signed_in(browser, airflow_env, "developer")
    pipeline = page.locator(f'[data-pipeline="{GATE}"]')
    pipeline.wait_for()
    run = pipeline.locator(f'[data-run="{waiting_run}"]')
    assert run.locator("[data-stage]").all_inner_texts()[0].startswith("Source")
    assert [s.get_attribute("data-stage") for s in run.locator("[data-stage]").all()] == [
        "Source",
        "Approval",
        "Release",
    ]
    assert "test browser" in run.locator("[data-revision]").inner_text()
    assert run.locator("[data-revision] a").count() == 0  # the javascript: commit URL is shown as text only
    assert page.locator('a[href^="javascript:" i]').count() == 0
    screenshot(page, "pipelines")

    # The page follows the colour mode Airflow's UI keeps in localStorage.
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.evaluate("localStorage.setItem('theme', 'dark')")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.evaluate("localStorage.removeItem('theme')")

    page.goto("/")  # Airflow's own UI lists the page in its navigation
    page.get_by_role("link", name="Releases").first.wait_for()


def test_the_example_release_is_seen_stage_by_stage_and_approved_by_its_reviewer_only(browser, airflow_env, api, inbox):
    """The example pipeline (include/pipelines/webapp-release.yaml): a push waits at its approval; a developer
    sees it stage by stage and why they cannot approve; qa-lead approves it with a comment and it deploys."""
    api.wait_for_dag(EXAMPLE, timeout=240)
    inbox.drain()
    conf = push_example(airflow_env, "browser")
    run_id = api.trigger(EXAMPLE, conf=conf)["dag_run_id"]
    wait_for_task_state(api, EXAMPLE, run_id, EXAMPLE_APPROVAL, {"deferred"}, timeout=300)

    developer = signed_in(browser, airflow_env, "developer")
    run = developer.locator(f'[data-pipeline="{EXAMPLE}"] [data-run="{run_id}"]')
    run.wait_for()
    stages = [s.get_attribute("data-stage") for s in run.locator("[data-stage]").all()]
    assert stages == ["Source", "Build", "Test", "Approval", "Deploy"]
    assert "test browser" in run.locator("[data-revision]").inner_text()
    developer.get_by_role("tab", name="Approvals").click()
    card = developer.locator(f'[data-approval="{EXAMPLE}/{EXAMPLE_APPROVAL}"]').filter(has_text=run_id)
    what = card.inner_text()  # what is approved: the release's commit, its test report
    assert conf["source"]["commit_id"][:7] in what and "integration tests passed" in what
    assert "developer is not among its approvers" in card.locator("[data-refusal]").inner_text()
    assert card.get_by_role("button", name="Approve").count() == 0

    reviewer = signed_in(browser, airflow_env, "qa-lead")
    reviewer.get_by_role("tab", name="Approvals").click()
    mine = reviewer.locator(f'[data-approval="{EXAMPLE}/{EXAMPLE_APPROVAL}"]').filter(has_text=run_id)
    mine.locator("textarea").fill("staging is green")
    screenshot(reviewer, "approvals")
    reviewer.once("dialog", lambda dialog: dialog.accept())
    mine.get_by_role("button", name="Approve").click()
    assert wait_for_run(api, EXAMPLE, run_id, timeout=300)["state"] == "success"
    decision = api.xcom(EXAMPLE, run_id, EXAMPLE_APPROVAL, key="approval_decision")
    assert (decision["Outcome"], decision["Reviewer"], decision["Comment"]) == (
        "Approved",
        "qa-lead",
        "staging is green",
    )
    inbox.drain(until=("SUCCEEDED: pipeline",))  # its messages are not another test's


def test_an_approver_approves_and_another_user_sees_why_they_cannot(
    browser, airflow_env, api, reviewer_api, waiting_run
):
    card = f'[data-approval="{GATE}/{APPROVAL}"]'
    viewer = signed_in(browser, airflow_env, "developer")
    viewer.get_by_role("tab", name="Approvals").click()
    refusal = viewer.locator(card).filter(has_text=waiting_run).locator("[data-refusal]")
    assert "developer is not among its approvers" in refusal.inner_text()
    assert viewer.locator(card).filter(has_text=waiting_run).get_by_role("button", name="Approve").count() == 0

    manager = signed_in(browser, airflow_env, "release-manager")
    manager.get_by_role("tab", name="Approvals").click()
    mine = manager.locator(card).filter(has_text=waiting_run)
    mine.locator("textarea").fill("staging looks good")
    manager.once("dialog", lambda dialog: dialog.accept())
    mine.get_by_role("button", name="Approve").click()
    wait_for_task_state(api, GATE, waiting_run, "Release.Confirm", {"deferred"}, timeout=120)
    decision = api.xcom(GATE, waiting_run, APPROVAL, key="approval_decision")
    assert (decision["Outcome"], decision["Reviewer"], decision["Comment"]) == (
        "Approved",
        "release-manager",
        "staging looks good",
    )
    # qa-lead alone may decide these two.
    approve_in_turn(api, reviewer_api, GATE, waiting_run, ("Release.Confirm", "Release.Record"), "test ends the run")
    wait_for_run(api, GATE, waiting_run, timeout=120)


def test_metrics_page_shows_the_four_keys(browser, airflow_env):
    page = signed_in(browser, airflow_env, "developer")
    page.get_by_role("tab", name="DORA metrics").click()
    overall = page.locator('[data-pipeline="(all)"]')
    overall.wait_for()
    for metric in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"):
        assert overall.locator(f'[data-metric="{metric}"]').count() == 1
    page.get_by_label("Window").select_option("90")
    page.locator('svg[aria-label="deployments per day"] rect').nth(89).wait_for(state="attached")
    screenshot(page, "metrics")


def test_operations_ask_for_a_reason_and_a_confirmation_and_refuse_who_may_not(browser, airflow_env, api):
    # A QUEUED pipeline whose build fails here (no such project in this sandbox): a stage with a door to close,
    # and a failed stage to retry.
    api.wait_for_dag(MODES, timeout=240)
    failed = api.trigger(MODES, conf=push_modes("browser-operations"))["dag_run_id"]
    assert wait_for_run(api, MODES, failed, timeout=180)["state"] == "failed"

    page = signed_in(browser, airflow_env, "release-manager")
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept("change freeze" if dialog.type == "prompt" else None)

    page.on("dialog", answer)
    card = page.locator(f'[data-pipeline="{MODES}"]')
    # Retry the failed stage: its build runs (and fails) again.
    card.locator('[data-op="retry-failed"][data-op-stage="Build"]').click()
    page.locator('[data-op-done="retry-failed"]').wait_for()
    assert "Run the failed actions of Build" in asked[0] and "Reason: change freeze" in asked[1]
    wait_for(
        lambda: (t := task(api, MODES, failed, "Build.Compile"))["try_number"] >= 2 and t["state"] == "failed",
        120,
        what="the retried build to fail again",
    )

    # Close the transition into Build: the next run waits at its door, and is stopped from the page there. Only
    # this pipeline's runs are made here (the page shows each pipeline's latest run; other tests read ap-gate's).
    card.locator('[data-op="disable"][data-op-stage="Build"]').click()
    page.locator('[data-op-done="disable"]').wait_for()
    closed = card.locator('[data-transition="disabled"]')
    closed.wait_for()
    assert "disabled by release-manager" in closed.inner_text() and "change freeze" in closed.inner_text()
    waiting = api.trigger(MODES, conf=push_modes("browser-stop"))["dag_run_id"]
    wait_for_task_state(api, MODES, waiting, "Build.Enter", {"deferred"}, timeout=120)
    page.reload()
    held = page.locator(f'[data-run="{waiting}"]')
    assert "waiting at the door" in held.locator('[data-stage="Build"] [data-waiting]').inner_text()
    held.scroll_into_view_if_needed()
    screenshot(page, "operations")
    held.locator('[data-op="stop"]').click()
    page.locator('[data-op-done="stop"]').wait_for()
    run = wait_for_run(api, MODES, waiting, timeout=60)
    assert (run["state"], run["note"]) == ("failed", "Stopped by release-manager: change freeze")
    page.locator(f'[data-pipeline="{MODES}"] [data-op="enable"][data-op-stage="Build"]').click()
    page.locator('[data-op-done="enable"]').wait_for()
    assert all(t["enabled"] for t in console_transitions(airflow_env, MODES))

    # Someone who may only read sees the buttons, and the refusal when using one; nothing changes.
    viewer = signed_in(browser, airflow_env, "developer")
    viewer.on("dialog", lambda dialog: dialog.accept("mine" if dialog.type == "prompt" else None))
    viewer.locator(f'[data-pipeline="{MODES}"] [data-op="disable"][data-op-stage="Build"]').click()
    refusal = viewer.locator("#op-result [data-refusal]")
    refusal.wait_for()
    assert f"developer may not edit pipeline {MODES}" in refusal.inner_text()
    assert all(t["enabled"] for t in console_transitions(airflow_env, MODES))
