"""The release console (/releases/) in the real api-server: behind Airflow's sign-in, per-DAG reads,
pipelines stage by stage, run history, the approvals inbox (deciding through the gate) and DORA metrics.

The page's requests are made here as the page makes them: with the session cookie Airflow's UI sets
(`_token`), not a bearer header. The browser tests (tests/browser/) click through the same page.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.helpers import approve_in_turn, wait_for, wait_for_run, wait_for_task_state
from tests.integration.test_approvals import push

pytestmark = pytest.mark.integration

GATE, APPROVAL = "ap-gate", "Approval.SignOff"


class Session:
    """A browser-like client: signed in with the `_token` cookie only."""

    def __init__(self, airflow_env, user: str | None):
        self.http = httpx.Client(base_url=airflow_env.airflow_url, timeout=30, follow_redirects=False)
        if user:
            token = self.http.post("/auth/token", json={"username": user, "password": airflow_env.users[user]}).json()[
                "access_token"
            ]
            self.http.cookies.set("_token", token)

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params)


def start_waiting_run(api, reviewer_api, label: str, **source) -> str:
    """An ap-gate run started by qa-lead (an approver, so not of this run) waiting at its approval;
    `source` adds to the revision its conf gives."""
    api.wait_for_dag(GATE, timeout=240)
    conf = push(label)
    conf["source"].update(source)
    run_id = reviewer_api.trigger(GATE, conf=conf)["dag_run_id"]
    wait_for_task_state(api, GATE, run_id, APPROVAL, {"deferred"}, timeout=240)
    return run_id


@pytest.fixture(scope="module")
def waiting_run(api, reviewer_api) -> str:
    return start_waiting_run(api, reviewer_api, "console")


def test_the_console_is_behind_airflows_sign_in(airflow_env):
    anonymous = Session(airflow_env, None)
    page = anonymous.get("/releases/")
    assert page.status_code == 303 and page.headers["location"] == "/auth/login?next=/releases/"
    for path in ("/releases/api/pipelines", "/releases/api/approvals", "/releases/api/metrics"):
        assert anonymous.get(path).status_code == 401, path
    anonymous.http.cookies.set("_token", "not-a-token")
    assert anonymous.get("/releases/api/pipelines").status_code == 403
    signed_in = Session(airflow_env, "developer").get("/releases/")
    assert signed_in.status_code == 200 and "<title>Releases</title>" in signed_in.text
    # The page is listed in Airflow's navigation.
    plugins = httpx.get(
        f"{airflow_env.airflow_url}/api/v2/plugins", headers={"Authorization": f"Bearer {token_of(airflow_env)}"}
    ).json()
    views = [v for p in plugins["plugins"] for v in p["external_views"]]
    assert {"name": "Releases", "href": "/releases/", "destination": "nav"}.items() <= views[0].items()


def token_of(airflow_env, user: str = "admin") -> str:
    response = httpx.post(
        f"{airflow_env.airflow_url}/auth/token", json={"username": user, "password": airflow_env.users[user]}
    )
    return response.json()["access_token"]


def test_pipelines_show_the_latest_run_stage_by_stage_with_its_revision(airflow_env, waiting_run):
    data = Session(airflow_env, "developer").get("/releases/api/pipelines", runs=10).json()
    gate = next(p for p in data["pipelines"] if p["pipeline"] == GATE)
    run = next(r for r in gate["runs"] if r["run_id"] == waiting_run)
    assert [s["name"] for s in run["stages"]] == ["Source", "Approval", "Release"]
    assert [(s["name"], s["state"]) for s in run["stages"]][:2] == [("Source", "succeeded"), ("Approval", "running")]
    assert [a["name"] for a in run["stages"][2]["actions"]] == ["Confirm", "Record"]
    assert run["revision"]["commit_message"] == "test console" and run["revision"]["author"] == "Test Author"
    assert (run["started_by"], run["triggering_user"]) == ("manual", "qa-lead")
    links = [link["name"] for link in run["stages"][0]["actions"][0]["links"]]
    assert links == [] and "webapp-release" in [p["pipeline"] for p in data["pipelines"]]


def test_run_history_pages_and_filters(airflow_env, waiting_run):
    console = Session(airflow_env, "developer")
    every = console.get(f"/releases/api/pipelines/{GATE}/runs", limit=100).json()
    ids = [r["run_id"] for r in every["runs"]]
    assert waiting_run in ids and every["total"] == len(ids)
    assert [r["run_after"] for r in every["runs"]] == sorted((r["run_after"] for r in every["runs"]), reverse=True)
    pages = [console.get(f"/releases/api/pipelines/{GATE}/runs", limit=1, offset=i).json() for i in range(len(ids))]
    assert [page["runs"][0]["run_id"] for page in pages] == ids  # a page at a time, newest first
    running = console.get(f"/releases/api/pipelines/{GATE}/runs", state="running").json()
    assert waiting_run in [r["run_id"] for r in running["runs"]]
    webhook_only = console.get(f"/releases/api/pipelines/{GATE}/runs", started_by="webhook").json()
    assert waiting_run not in [r["run_id"] for r in webhook_only["runs"]]
    assert console.get("/releases/api/pipelines/no-such-pipeline/runs").status_code == 404
    assert console.get(f"/releases/api/pipelines/{GATE}/runs", limit=1000).status_code == 422


def test_approvals_inbox_shows_what_is_approved_and_only_approvers_may_decide(airflow_env, api, reviewer_api):
    # A run of its own: the other tests read `waiting_run` while it waits, in whatever order they run.
    waiting_run = start_waiting_run(api, reviewer_api, "console")

    def pending(user: str) -> dict:
        data = Session(airflow_env, user).get("/releases/api/approvals").json()
        return next(a for a in data["approvals"] if a["run"]["run_id"] == waiting_run and a["task_id"] == APPROVAL)

    seen_by_developer = pending("developer")
    assert seen_by_developer["custom_data"].startswith("Release ")  # rendered: the commit id filled in
    assert seen_by_developer["approvers"] == ["qa-lead", "role:user"]
    assert seen_by_developer["outputs"]["Source.Checkout"]["CommitMessage"] == "test console"
    assert not seen_by_developer["may_decide"]
    assert "developer is not among its approvers" in seen_by_developer["refusal"]
    assert "qa-lead started this run" in pending("qa-lead")["refusal"]
    assert pending("release-manager")["may_decide"] is True

    # Deciding goes through Airflow's REST API with the session cookie, as the page does, and the gate.
    path = f"/api/v2/dags/{GATE}/dagRuns/{waiting_run}/taskInstances/{APPROVAL}"
    refused = Session(airflow_env, "developer").http.patch(path, json={"new_state": "success", "note": "me"})
    assert refused.status_code == 403
    approved = Session(airflow_env, "release-manager").http.patch(path, json={"new_state": "success", "note": "ok"})
    assert approved.status_code == 200, approved.text
    wait_for_task_state(api, GATE, waiting_run, "Release.Confirm", {"deferred"}, timeout=120)
    wait_for(
        lambda: all(a["run"]["run_id"] != waiting_run or a["task_id"] != APPROVAL for a in inbox(airflow_env)),
        timeout=30,
        what="the approval to leave the inbox",
    )
    # qa-lead alone may decide these two.
    approve_in_turn(api, reviewer_api, GATE, waiting_run, ("Release.Confirm", "Release.Record"), "test ends the run")
    wait_for_run(api, GATE, waiting_run, timeout=120)


def inbox(airflow_env) -> list[dict]:
    return Session(airflow_env, "qa-lead").get("/releases/api/approvals").json()["approvals"]


def test_metrics_answer_for_30_and_90_days_and_refuse_other_windows(airflow_env):
    console = Session(airflow_env, "developer")
    for days in (30, 90):
        data = console.get("/releases/api/metrics", days=days).json()
        assert data["days"] == days and len(data["overall"]["deployments_per_day"]) == days
        assert set(data["overall"]) >= {
            "deployment_frequency_per_day",
            "lead_time_hours_median",
            "change_failure_rate",
            "time_to_restore_hours_median",
        }
    assert console.get("/releases/api/metrics", days=0).status_code == 422
