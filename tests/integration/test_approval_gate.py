"""The approval gate in real Airflow processes: only an allowed approver decides, by any REST path.

ap-gate's approval allows qa-lead and everyone with the role `user` (release-manager); admin may change
any task but is not an approver; developer is a viewer. A refused decision leaves the approval waiting
and is recorded in Airflow's audit log; an allowed one yields outputs a later action reads.
"""

from __future__ import annotations

import pytest

from include.localenv.airflow_api import AirflowAPI, AirflowAPIError
from tests.integration.helpers import task_log, wait_for, wait_for_run, wait_for_task_state
from tests.integration.test_approvals import Mailbox, push

pytestmark = pytest.mark.integration

GATE, GATE_FORM = "ap-gate", "ap-gate-form"
APPROVAL, CONFIRM, RECORD = "Approval.SignOff", "Release.Confirm", "Release.Record"
WAITING = {"deferred"}


@pytest.fixture(scope="module")
def mailbox(inbox) -> Mailbox:
    return Mailbox(inbox)


@pytest.fixture(scope="module")
def runs(api, reviewer_api, mailbox) -> dict[str, tuple[str, str]]:
    """Every run of this module, started at once: name -> (pipeline, run id)."""
    for pipeline in (GATE, GATE_FORM):
        api.wait_for_dag(pipeline, timeout=240)
    mailbox.collect()
    plan = [
        ("outsiders", GATE, api),  # started by admin
        ("own-run", GATE, reviewer_api),  # started by qa-lead, an approver
        ("own-form", GATE_FORM, reviewer_api),
        ("stopped", GATE, api),
    ]
    return {
        name: (pipeline, client.trigger(pipeline, conf=push(name))["dag_run_id"]) for name, pipeline, client in plan
    }


def state_of(api: AirflowAPI, pipeline: str, run_id: str, task_id: str) -> str | None:
    return next(ti["state"] for ti in api.task_instances(pipeline, run_id) if ti["task_id"] == task_id)


def refused(call) -> str:
    with pytest.raises(AirflowAPIError) as error:
        call()
    assert "HTTP 403" in str(error.value), error.value
    return str(error.value)


def audit(api: AirflowAPI, pipeline: str, run_id: str, event: str) -> list[dict]:
    logs = api.request("GET", "/eventLogs", params={"dag_id": pipeline, "run_id": run_id, "event": event, "limit": 100})
    return logs["event_logs"]


def test_nobody_but_an_approver_decides_by_any_rest_path(api, airflow_env, manager_api, reviewer_api, mailbox, runs):
    pipeline, run_id = runs["outsiders"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    base = f"/dags/{pipeline}/dagRuns/{run_id}"

    # admin may change every task, and started this run; neither makes it an approver.
    why = refused(lambda: api.set_task_state(pipeline, run_id, APPROVAL, "success", note="admin approves"))
    assert "admin started this run" in why
    refused(lambda: api.set_task_state(pipeline, run_id, APPROVAL, "failed"))
    refused(lambda: api.request("PATCH", f"{base}/taskGroupInstances/Approval", json={"new_state": "success"}))
    refused(  # marking an earlier task "with downstream" reaches the approval too
        lambda: api.request(
            "PATCH",
            f"{base}/taskInstances/Source.Checkout",
            json={"new_state": "failed", "include_downstream": True},
        )
    )
    refused(
        lambda: api.request(
            "POST",
            f"{base}/taskInstances/{APPROVAL}/xcomEntries",
            json={"key": "approval_decision", "value": {"Outcome": "Approved", "Reviewer": "qa-lead"}},
        )
    )
    bulk = {"actions": [{"action": "update", "entities": [{"task_id": APPROVAL, "new_state": "success"}]}]}
    try:
        api.request("PATCH", f"{base}/taskInstances", json=bulk)
    except AirflowAPIError:
        pass  # refused outright, or reported per entity: either way the approval must still wait
    developer = AirflowAPI(airflow_env.airflow_url, "developer", airflow_env.users["developer"])
    refused(lambda: developer.set_task_state(pipeline, run_id, APPROVAL, "success"))  # a viewer: Airflow's rule
    assert state_of(api, pipeline, run_id, APPROVAL) in WAITING
    assert state_of(api, pipeline, run_id, "Source.Checkout") == "success"

    refusals = audit(api, pipeline, run_id, "approval.refused")
    assert {entry["owner"] for entry in refusals} == {"admin"}
    assert len(refusals) >= 5, refusals
    reasons = " ".join(entry["extra"] or "" for entry in refusals)
    assert "admin started this run" in reasons and "is written only by the approval itself" in reasons, refusals
    announced = mailbox.wait(pipeline, run_id, "REFUSED: ap-gate Approval.SignOff: admin may not decide it")
    assert announced[0]["parsed"]["detail"]["refused"]["user"] == "admin"

    # An approver by role decides; the later action reads the outputs the gate recorded.
    manager_api.set_task_state(pipeline, run_id, APPROVAL, "success", note="staging checked")
    outputs = api.xcom(pipeline, run_id, APPROVAL)  # recorded with the state change, in its transaction
    assert (outputs["Outcome"], outputs["Reviewer"], outputs["Comment"]) == (
        "Approved",
        "release-manager",
        "staging checked",
    )
    wait_for_task_state(api, pipeline, run_id, CONFIRM, WAITING, timeout=180)
    needed = mailbox.wait(pipeline, run_id, "APPROVAL NEEDED: ap-gate Release.Confirm")
    assert needed[0]["parsed"]["approval"]["customData"] == "Approved by release-manager: staging checked"
    [approved] = audit(api, pipeline, run_id, "approval.approved")
    assert approved["owner"] == "release-manager" and approved["task_id"] == APPROVAL

    wait_for_task_state(api, pipeline, run_id, RECORD, WAITING, timeout=180)
    reviewer_api.set_task_state(pipeline, run_id, CONFIRM, "success")
    reviewer_api.set_task_state(pipeline, run_id, RECORD, "success")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "success"


def test_the_person_who_started_the_run_cannot_decide_it(api, reviewer_api, manager_api, runs):
    pipeline, run_id = runs["own-run"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    why = refused(lambda: reviewer_api.set_task_state(pipeline, run_id, APPROVAL, "success"))
    assert "qa-lead started this run and cannot approve or reject it" in why
    assert state_of(api, pipeline, run_id, APPROVAL) in WAITING
    [refusal] = audit(api, pipeline, run_id, "approval.refused")
    assert refusal["owner"] == "qa-lead"

    manager_api.set_task_state(pipeline, run_id, APPROVAL, "failed", note="not this build")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "failed"
    assert state_of(api, pipeline, run_id, CONFIRM) == "upstream_failed"
    decision = api.xcom(pipeline, run_id, APPROVAL, key="approval_decision")
    assert (decision["Outcome"], decision["Reviewer"], decision["DecidedBy"]) == ("Rejected", "release-manager", "mark")


def test_the_form_refuses_the_runs_author_and_non_approvers_marking_it(api, reviewer_api, manager_api, runs):
    pipeline, run_id = runs["own-form"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    form = f"/dags/{pipeline}/dagRuns/{run_id}/taskInstances/{APPROVAL}/-1/hitlDetails"
    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "mine"}}
    why = refused(lambda: reviewer_api.request("PATCH", form, json=answer))
    assert "qa-lead started this run" in why
    refused(lambda: api.set_task_state(pipeline, run_id, APPROVAL, "success"))  # not an approver of the form
    detail = api.request("GET", form)
    assert detail["response_received"] is False
    assert state_of(api, pipeline, run_id, APPROVAL) in WAITING

    response = manager_api.request("PATCH", form, json={**answer, "params_input": {"comment": "looks right"}})
    assert response["responded_by"]["name"] == "release-manager"
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "success"
    outputs = api.xcom(pipeline, run_id, APPROVAL)
    assert (outputs["Reviewer"], outputs["Comment"]) == ("release-manager", "looks right")
    [answered] = audit(api, pipeline, run_id, "approval.approved")
    assert answered["owner"] == "release-manager" and "hitlDetails" in answered["extra"]


def test_a_run_marked_as_a_whole_ends_without_approving_and_later_actions_refuse_to_run(api, runs):
    pipeline, run_id = runs["stopped"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    api.request("PATCH", f"/dags/{pipeline}/dagRuns/{run_id}", json={"state": "success"})
    assert state_of(api, pipeline, run_id, CONFIRM) == state_of(api, pipeline, run_id, RECORD) == "skipped"
    decision = api.xcom(pipeline, run_id, APPROVAL, key="approval_decision")
    assert decision["Outcome"] == "Stopped" and decision["By"] == "admin"

    # Clearing the actions after the approval runs them: they find no approval and refuse.
    api.request(
        "POST",
        f"/dags/{pipeline}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": run_id, "task_ids": [CONFIRM, RECORD], "only_failed": False},
    )
    wait_for(
        lambda: state_of(api, pipeline, run_id, CONFIRM) == state_of(api, pipeline, run_id, RECORD) == "failed",
        180,
        interval=1,
        what=f"the actions after the approval of {run_id} to refuse to run",
    )
    refusal = f"approval {APPROVAL} was not approved in this run (its decision is Stopped)"
    assert refusal in task_log(api, pipeline, run_id, RECORD, containing=(refusal,))
    # An action that reads the approval's outputs stops earlier, when its references find none.
    unresolved = "#{Gate.Outcome}: action Approval.SignOff recorded no outputs in this run"
    assert unresolved in task_log(api, pipeline, run_id, CONFIRM, containing=(unresolved,))
