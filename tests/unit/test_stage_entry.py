"""Who enters a stage (stages/entry.py) and how the compiler puts a door in front of each stage."""

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.loader import load_spec_text
from release_orchestrator.stages.entry import Door, decide, holds

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
DOOR = Door("Deploy", "Deploy.Enter", ("Deploy.EC2", "Deploy.ECS"), "QUEUED")


def order_of(*run_ids):
    """Runs created in the order given; any other run is not placed in line yet."""
    places = {run_id: (T0 + timedelta(minutes=i), run_id) for i, run_id in enumerate(run_ids)}
    return places.get


def states(enter=None, ec2=None, ecs=None):
    return {"Deploy.Enter": enter, "Deploy.EC2": ec2, "Deploy.ECS": ecs}


@pytest.mark.parametrize(
    ("enter", "ec2", "ecs", "holding"),
    [
        ("success", None, None, True),  # reserved: let in, its actions not started yet
        ("success", "running", "success", True),
        ("success", "deferred", None, True),
        ("success", "success", "success", False),  # left the stage
        ("success", "failed", "upstream_failed", False),  # failed there
        ("success", "skipped", "skipped", False),  # run marked failed: unstarted tasks are skipped
        ("scheduled", None, None, False),  # waiting at the door
        ("deferred", None, None, False),  # at the door, waiting for the stage
        (None, "running", None, True),  # an action cleared and run by hand: it is in the stage all the same
        ("success", "up_for_retry", "success", True),
    ],
)
def test_what_holds_a_stage(enter, ec2, ecs, holding):
    assert holds(DOOR, states(enter, ec2, ecs)) is holding


def test_a_free_stage_lets_the_run_in():
    runs = {"r1": states("success", "success", "success"), "r2": states("running")}
    assert decide(DOOR, "r2", runs, order_of("r1", "r2"), may_yield=True).kind == "enter"


def test_a_run_waits_while_another_holds_the_stage():
    runs = {"r1": states("success", "running", None), "r2": states("running")}
    decision = decide(DOOR, "r2", runs, order_of("r1", "r2"), may_yield=True)
    assert (decision.kind, decision.other) == ("wait", "r1")


def test_queued_an_older_run_waiting_at_the_door_goes_first():
    runs = {"r1": states("success", "running"), "r2": states("scheduled"), "r3": states("running")}
    decision = decide(DOOR, "r3", runs, order_of("r1", "r2", "r3"), may_yield=True)
    assert (decision.kind, decision.other) == ("yield", "r2")
    # The trigger already holds the door and cannot step back: it waits for the stage.
    assert decide(DOOR, "r3", runs, order_of("r1", "r2", "r3"), may_yield=False).kind == "wait"


def test_queued_newer_runs_at_the_door_do_not_hold_an_older_one_back():
    runs = {"r1": states("running"), "r2": states("scheduled"), "r3": states("scheduled")}
    assert decide(DOOR, "r1", runs, order_of("r1", "r2", "r3"), may_yield=True).kind == "enter"


def test_a_run_not_placed_in_line_yet_counts_as_newer():
    runs = {"r1": states("running"), "r9": states("scheduled")}
    assert decide(DOOR, "r1", runs, order_of("r1"), may_yield=True).kind == "enter"


def test_superseded_by_a_newer_run_waiting_at_the_door():
    door = Door("Deploy", "Deploy.Enter", ("Deploy.EC2",), "SUPERSEDED")
    runs = {"r1": states("success", "running"), "r2": states("deferred"), "r3": states("scheduled")}
    decision = decide(door, "r2", runs, order_of("r1", "r2", "r3"), may_yield=False)
    assert (decision.kind, decision.other) == ("superseded", "r3")


def test_superseded_when_a_newer_run_has_passed_the_door():
    door = Door("Deploy", "Deploy.Enter", ("Deploy.EC2",), "SUPERSEDED")
    runs = {"r1": states("running"), "r2": states("success", "success")}
    decision = decide(door, "r1", runs, order_of("r1", "r2"), may_yield=True)
    assert (decision.kind, decision.other) == ("superseded", "r2")


def test_superseded_mode_an_older_waiting_run_does_not_hold_a_newer_one_back():
    door = Door("Deploy", "Deploy.Enter", ("Deploy.EC2",), "SUPERSEDED")
    runs = {"r1": states("scheduled"), "r2": states("running")}
    assert decide(door, "r2", runs, order_of("r1", "r2"), may_yield=True).kind == "enter"


SPEC = """
pipeline:
  name: doors
  execution_mode: {mode}
  notifications:
    topic_arn: arn:aws:sns:us-east-1:123456789012:releases
    events: [pipeline-failed, pipeline-superseded]
  stages:
    - name: Source
      actions:
        - name: Checkout
          type: source.github
          configuration: {{repository: acme/app, branch: main}}
    - name: Approval
      actions:
        - name: {approval}
          type: approval.manual
    - name: Deploy
      actions:
        - name: Web
          type: deploy.codedeploy
          configuration: {{application_name: app, deployment_group_name: web, revision_s3_bucket: b, revision_s3_key: k}}
        - name: Smoke
          type: build.codebuild
          run_order: 2
          configuration: {{project_name: smoke}}
"""


def build(mode, approval="SignOff"):
    return compiler.build_dag(load_spec_text(SPEC.format(mode=mode, approval=approval), "doors.yaml"))


@pytest.mark.parametrize("mode", ["QUEUED", "SUPERSEDED"])
def test_each_stage_starts_with_a_door_and_doors_are_chained(mode):
    dag = build(mode)
    assert dag.max_active_runs > 1  # runs overlap; the doors keep them apart stage by stage
    enter = dag.task_dict["Deploy.Enter"]
    assert enter.max_active_tis_per_dag == 1
    assert (enter.mode, enter.stage, enter.action_task_ids) == (mode, "Deploy", ["Deploy.Web", "Deploy.Smoke"])
    assert enter.first_enter_task_id == "Source.Enter"
    # The next door waits for this door only, so a run reserves the next stage while still in this one.
    assert enter.upstream_task_ids == {"Approval.Enter"}
    assert dag.task_dict["Deploy.Web"].upstream_task_ids == {"Deploy.Enter", "Approval.SignOff"}
    assert dag.task_dict["Deploy.Smoke"].upstream_task_ids == {"Deploy.Web"}
    assert dag.task_dict["Approval.SignOff"].stage_door == {
        "enter_task_id": "Approval.Enter",
        "first_enter_task_id": "Source.Enter",
    }
    failed = dag.on_failure_callback[0]
    assert {"Source.Enter", "Approval.Enter", "Deploy.Enter"} <= set(failed.superseding_task_ids)


def test_parallel_runs_have_no_doors():
    dag = build("PARALLEL")
    assert not [task_id for task_id in dag.task_dict if task_id.endswith(".Enter")]
    assert dag.task_dict["Deploy.Web"].upstream_task_ids == {"Approval.SignOff"}
    assert dag.task_dict["Approval.SignOff"].stage_door is None


def test_an_action_named_enter_is_refused_where_stages_have_doors():
    with pytest.raises(SpecError, match="each stage starts with the task Enter") as caught:
        build("QUEUED", approval="Enter")
    assert "doors.yaml" in str(caught.value) and "Approval" in str(caught.value)
    assert build("PARALLEL", approval="Enter").task_dict["Approval.Enter"].task_type == "ManualApprovalOperator"


# ---- the check each action makes (stages/guard.py) ----------------------------------------------
class GuardTI:
    dag_id, task_id = "doors", "Deploy.EC2"

    def __init__(self, run_id):
        self.run_id = run_id


def guard_context(run_id):
    return {"ti": GuardTI(run_id), "dag_run": SimpleNamespace(run_id=run_id, conf={})}


def guard_with(monkeypatch, states_by_run, entered_at):
    from release_orchestrator.stages import guard

    monkeypatch.setattr(guard, "door_states", lambda dag_id, door: states_by_run)
    monkeypatch.setattr(guard.StageHeld, "entered_at", lambda self, ti, run_id: entered_at.get(run_id))
    return guard.StageHeld(DOOR)


def test_an_action_runs_while_its_run_holds_the_stage(monkeypatch):
    check = guard_with(
        monkeypatch,
        {"r1": states("success", "running"), "r2": states("deferred"), "r0": states("success", "success", "success")},
        {"r1": "2026-12-01T12:00:05.000001+00:00", "r0": "2026-12-01T12:00:00.000001+00:00"},
    )
    check(guard_context("r1"))


def test_an_action_of_a_run_that_did_not_enter_its_stage_does_not_run(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    check = guard_with(monkeypatch, {"r1": states("upstream_failed", "running")}, {})
    with pytest.raises(AirflowFailException, match="has not entered stage Deploy .Deploy.Enter is upstream_failed"):
        check(guard_context("r1"))


def test_an_action_cleared_by_hand_does_not_run_beside_the_run_that_entered_after_its_own(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    # r1 failed in Deploy, r2 entered Deploy after it; then someone cleared r1's failed action only.
    runs = {"r1": states("success", "queued", "upstream_failed"), "r2": states("success", "running", None)}
    entered = {"r1": "2026-12-01T12:00:00.000001+00:00", "r2": "2026-12-01T12:05:00.000001+00:00"}
    check = guard_with(monkeypatch, runs, entered)
    with pytest.raises(AirflowFailException, match="run r2 entered stage Deploy after this run and holds it"):
        check(guard_context("r1"))
    check(guard_context("r2"))  # the run that holds the stage goes on


def test_every_action_of_a_pipeline_with_doors_checks_its_stage_and_its_approvals():
    from release_orchestrator.gate.policy import ApprovalsRequired
    from release_orchestrator.pipeline.compiler import AllChecks
    from release_orchestrator.stages.guard import StageHeld
    from release_orchestrator.stages.rollback import RollbackScope

    dag = build("QUEUED")
    checkout = dag.task_dict["Source.Checkout"]._pre_execute_hook
    in_rollback, stage_check = checkout.checks
    assert isinstance(in_rollback, RollbackScope) and in_rollback.stage == "Source"
    assert isinstance(stage_check, StageHeld) and stage_check.door.enter_task_id == "Source.Enter"
    smoke = dag.task_dict["Deploy.Smoke"]._pre_execute_hook
    assert isinstance(smoke, AllChecks)
    in_rollback, approvals, stage_check = smoke.checks
    assert in_rollback.action_task_ids == ["Deploy.Web", "Deploy.Smoke"]
    assert isinstance(approvals, ApprovalsRequired) and approvals.approval_task_ids == ["Approval.SignOff"]
    assert stage_check.door == Door("Deploy", "Deploy.Enter", ("Deploy.Web", "Deploy.Smoke"), "QUEUED")
    assert isinstance(build("PARALLEL").task_dict["Source.Checkout"]._pre_execute_hook, RollbackScope)


# ---- transitions (stages/transitions.py) --------------------------------------------------------
def test_a_disabled_transition_lets_nobody_in_but_superseding_and_turns_go_on():
    runs = {"r1": states("success", "success", "success"), "r2": states("running")}
    assert decide(DOOR, "r2", runs, order_of("r1", "r2"), may_yield=True, closed=True).kind == "closed"
    door = Door("Deploy", "Deploy.Enter", ("Deploy.EC2",), "SUPERSEDED")
    runs = {"r1": states("deferred"), "r2": states("scheduled")}
    decision = decide(door, "r1", runs, order_of("r1", "r2"), may_yield=False, closed=True)
    assert (decision.kind, decision.other) == ("superseded", "r2")


@pytest.mark.parametrize(
    ("stored", "disabled_by"),
    [
        (None, None),
        ('{"disabled_by": "ana", "reason": "freeze", "disabled_at": "2026-12-01T12:00:00+00:00"}', "ana"),
        ("not json", None),  # still closed: someone meant it to be
        ("[1, 2]", None),
    ],
)
def test_a_stored_transition_record_is_read_as_closed_unless_there_is_none(stored, disabled_by):
    from release_orchestrator.stages.transitions import describe, parse

    record = parse(stored)
    if stored is None:
        assert record is None
        return
    assert record["disabled_by"] == disabled_by
    assert describe(record).startswith(f"disabled by {disabled_by or 'someone'}")


def test_the_transition_variable_key_names_the_pipeline_and_the_stage_group():
    from release_orchestrator.stages.transitions import is_transition_key, variable_key

    assert variable_key("webapp-release", "Deploy.Prod") == "release_orchestrator.transition.webapp-release.Deploy_Prod"
    assert is_transition_key(variable_key("p", "s")) and not is_transition_key("release_orchestrator.other")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["transition", "enable", "webapp-release"], "name the STAGE"),
        (["transition", "disable", "webapp-release", "Deploy"], "give --reason"),
        (["transition", "disable", "webapp-release", "Deploy", "--reason", "  "], "give --reason"),
    ],
)
def test_the_transition_command_refuses_incomplete_requests_before_calling_anything(arguments, message, capsys):
    from release_orchestrator.__main__ import main

    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_the_transition_command_says_how_to_sign_in(capsys, monkeypatch):
    from release_orchestrator.__main__ import main

    for name in ("AIRFLOW_TOKEN", "AIRFLOW_USER", "AIRFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["transition", "show", "webapp-release", "--airflow-url", "http://127.0.0.1:9"]) == 1
    assert "give --token (or AIRFLOW_TOKEN), or --user and --password" in capsys.readouterr().err


def test_the_transition_table_shows_who_disabled_what_and_why():
    from release_orchestrator.console_client import transitions_table

    table = transitions_table(
        [
            {"stage": "Build", "enabled": True},
            {
                "stage": "Deploy",
                "enabled": False,
                "disabled_by": "ana",
                "disabled_at": "2026-12-01T12:00:00+00:00",
                "reason": "change freeze",
            },
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "transition", "disabled", "by", "since", "reason"]
    assert lines[1].split() == ["Build", "enabled"]
    assert lines[2].split()[:3] == ["Deploy", "DISABLED", "ana"] and lines[2].endswith("change freeze")


# ---- retrying a failed stage (stages/retry.py, ui/operations.py) ------------------------------------
STAGES = [
    ("Source", ["Source.Enter", "Source.Checkout"]),
    ("Build", ["Build.Enter", "Build.Steady", "Build.Flaky"]),
    ("Deploy", ["Deploy.Enter", "Deploy.Web"]),
]
FAILED_BUILD = {
    "Source.Enter": "success",
    "Source.Checkout": "success",
    "Build.Enter": "success",
    "Build.Steady": "success",
    "Build.Flaky": "failed",
    "Deploy.Enter": "success",  # reserved while the run was in Build
    "Deploy.Web": "upstream_failed",
}


def test_retrying_failed_actions_clears_them_the_door_and_everything_after():
    from release_orchestrator.stages.retry import tasks_to_retry

    cleared = tasks_to_retry(STAGES, FAILED_BUILD, "Build", "FAILED_ACTIONS")
    assert cleared == ["Build.Enter", "Build.Flaky", "Deploy.Enter", "Deploy.Web"]
    everything = tasks_to_retry(STAGES, FAILED_BUILD, "Build", "ALL_ACTIONS")
    assert everything == ["Build.Enter", "Build.Steady", "Build.Flaky", "Deploy.Enter", "Deploy.Web"]


@pytest.mark.parametrize(
    ("stage", "mode", "message"),
    [
        ("Source", "FAILED_ACTIONS", "stage Source has no failed action in this run"),
        ("Deploy", "FAILED_ACTIONS", "stage Deploy has no failed action"),  # upstream failed: not its own failure
        ("Test", "FAILED_ACTIONS", "no stage 'Test'; the stages are Source, Build, Deploy"),
        ("Build", "SOME", "retry mode must be one of FAILED_ACTIONS, ALL_ACTIONS"),
    ],
)
def test_a_retry_that_does_not_apply_says_why(stage, mode, message):
    from release_orchestrator.stages.retry import RetryRefused, tasks_to_retry

    states = {**FAILED_BUILD, "Deploy.Web": "upstream_failed"}
    if stage == "Deploy":
        states["Build.Flaky"] = "success"
    with pytest.raises(RetryRefused, match=message.replace("(", r"\(")):
        tasks_to_retry(STAGES, states, stage, mode)


@pytest.mark.parametrize("rollback", ["success", "failed"])
def test_a_stage_rolled_back_in_the_run_is_retried_with_all_its_actions_only(rollback):
    from release_orchestrator.stages.retry import RetryRefused, tasks_to_retry

    stages = [*STAGES[:1], ("Build", [*STAGES[1][1], "Build.Rollback"]), *STAGES[2:]]
    states = {**FAILED_BUILD, "Build.Rollback": rollback}
    with pytest.raises(RetryRefused, match="was rolled back after it failed in this run: retry all its actions"):
        tasks_to_retry(stages, states, "Build", "FAILED_ACTIONS")
    assert "Build.Steady" in tasks_to_retry(stages, states, "Build", "ALL_ACTIONS")
    # Not rolled back (its Rollback skipped itself): the failed actions alone may run again.
    assert "Build.Steady" not in tasks_to_retry(
        stages, {**states, "Build.Rollback": "skipped"}, "Build", "FAILED_ACTIONS"
    )


def test_the_stages_of_a_compiled_pipeline_come_in_order_without_preflight():
    from release_orchestrator.ui.queries import stages_in_order

    text = SPEC.format(mode="QUEUED", approval="SignOff").replace(
        "  execution_mode: QUEUED\n", "  execution_mode: QUEUED\n  preflight: true\n"
    )
    dag = compiler.build_dag(load_spec_text(text, "doors.yaml"))
    stages = stages_in_order(dag)
    assert [name for name, _ in stages] == ["Source", "Approval", "Deploy"]
    assert stages[2][1] == ["Deploy.Enter", "Deploy.Smoke", "Deploy.Web"]
