"""The approval gate with the FAB auth manager: roles and users of FAB's own decide, or are refused.

ap-gate-fab's approval allows the FAB role `release-managers`. A second api-server runs the FAB auth
manager on the session's environment (tests/integration/fab.py): fab-approver has the roles User and
release-managers, fab-outsider only User. Both may change task instances as far as Airflow (FAB) is
concerned; only the gate tells them apart. Runs are started as admin through the simple-auth api-server.
"""

from __future__ import annotations

import pytest

from tests.integration.fab import APPROVER_ROLE
from tests.integration.helpers import wait_for_run, wait_for_task_state
from tests.integration.test_approval_gate import audit, refused, state_of
from tests.integration.test_approvals import push

pytestmark = pytest.mark.integration

PIPELINE, FORM_PIPELINE, APPROVAL = "ap-gate-fab", "ap-gate-fab-form", "Approval.SignOff"


@pytest.fixture(scope="module")
def runs(api, fab_api_server) -> dict[str, str]:
    """Every run of this module, started at once: name -> run id."""
    for pipeline in (PIPELINE, FORM_PIPELINE):
        api.wait_for_dag(pipeline, timeout=240)
    return {
        "admin": api.trigger(PIPELINE, conf=push("fab-admin"))["dag_run_id"],
        "own": fab_api_server.client("fab-approver").trigger(PIPELINE, conf=push("fab-own"))["dag_run_id"],
        "form": api.trigger(FORM_PIPELINE, conf=push("fab-form"))["dag_run_id"],
    }


def test_only_a_fab_approver_by_role_decides(api, fab_api_server, runs):
    run_id = runs["admin"]
    outsider, approver = fab_api_server.client("fab-outsider"), fab_api_server.client("fab-approver")
    wait_for_task_state(api, PIPELINE, run_id, APPROVAL, {"deferred"}, timeout=240)

    why = refused(lambda: outsider.set_task_state(PIPELINE, run_id, APPROVAL, "success", note="looks fine to me"))
    assert f"fab-outsider is not among its approvers (role:{APPROVER_ROLE})" in why
    assert state_of(api, PIPELINE, run_id, APPROVAL) == "deferred"
    [refusal] = audit(api, PIPELINE, run_id, "approval.refused")
    assert refusal["owner"] == "fab-outsider"

    approver.set_task_state(PIPELINE, run_id, APPROVAL, "success", note="checked by release management")
    assert wait_for_run(api, PIPELINE, run_id, timeout=180)["state"] == "success"
    outputs = api.xcom(PIPELINE, run_id, APPROVAL)
    assert (outputs["Outcome"], outputs["Reviewer"], outputs["Comment"]) == (
        "Approved",
        "fab-approver",
        "checked by release management",
    )
    decision = api.xcom(PIPELINE, run_id, APPROVAL, key="approval_decision")
    assert (decision["DecidedBy"], decision["Path"]) == (
        "mark",
        f"PATCH /api/v2/dags/{PIPELINE}/dagRuns/{run_id}/taskInstances/{APPROVAL}",
    )
    [approved] = audit(api, PIPELINE, run_id, "approval.approved")
    assert approved["owner"] == "fab-approver"


def test_a_fab_user_who_started_the_run_cannot_decide_it(api, fab_api_server, runs):
    run_id = runs["own"]
    approver = fab_api_server.client("fab-approver")
    assert api.get_run(PIPELINE, run_id)["triggering_user_name"] == "fab-approver"
    wait_for_task_state(api, PIPELINE, run_id, APPROVAL, {"deferred"}, timeout=240)

    why = refused(lambda: approver.set_task_state(PIPELINE, run_id, APPROVAL, "failed", note="mine"))
    assert "fab-approver started this run and cannot approve or reject it" in why
    assert state_of(api, PIPELINE, run_id, APPROVAL) == "deferred"
    [refusal] = audit(api, PIPELINE, run_id, "approval.refused")
    assert refusal["owner"] == "fab-approver"

    # Stop the run so nothing of this module keeps waiting; the gate records it as stopped, not decided.
    api.request("PATCH", f"/dags/{PIPELINE}/dagRuns/{run_id}", json={"state": "failed"})
    assert api.xcom(PIPELINE, run_id, APPROVAL, key="approval_decision")["Outcome"] == "Stopped"


def test_a_fab_user_named_in_a_forms_approvers_answers_it(api, fab_api_server, runs):
    run_id = runs["form"]
    wait_for_task_state(api, FORM_PIPELINE, run_id, APPROVAL, {"deferred"}, timeout=240)
    form = f"/dags/{FORM_PIPELINE}/dagRuns/{run_id}/taskInstances/{APPROVAL}/-1/hitlDetails"
    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "approved on FAB"}}
    response = fab_api_server.client("fab-approver").request("PATCH", form, json=answer)
    assert response["responded_by"]["name"] == "fab-approver"
    assert wait_for_run(api, FORM_PIPELINE, run_id, timeout=180)["state"] == "success"
