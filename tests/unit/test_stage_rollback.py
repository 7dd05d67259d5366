"""Rolling a stage back (stages/rollback.py): the spec's on_failure, the compiled Rollback task and the doors'
trigger rules, choosing and checking the run to go back to, the scope of a rollback run's tasks, and the wait
of the failed run for its rollback (triggers/stage_rollback.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from release_orchestrator.pipeline.compiler import build_dag
from release_orchestrator.pipeline.loader import load_spec_text, parse_spec_text
from release_orchestrator.stages.rollback import (
    Candidate,
    Rollback,
    RollbackRefused,
    RollbackScope,
    check_target,
    choose_target,
    rollback_of,
    rollback_run_conf,
)
from release_orchestrator.triggers.stage_rollback import StageRollbackTrigger

SPEC = """\
pipeline:
  name: rb
  execution_mode: QUEUED
  stages:
    - name: Build
{build_on_failure}      actions:
        - name: Compile
          type: build.codebuild
          namespace: Build
          configuration: {{project_name: webapp-build}}
    - name: Deploy
      on_failure: {on_failure}
      actions:
        - name: {deploy_name}
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
        - name: Smoke
          type: build.codebuild
          run_order: 2
          configuration: {{project_name: webapp-build}}
    - name: Final
      actions:
        - name: Announce
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
"""
ACTIONS = ["Deploy.Ship", "Deploy.Smoke"]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def spec(on_failure="{result: ROLLBACK}", build_on_failure="", deploy_name="Ship") -> str:
    return SPEC.format(on_failure=on_failure, build_on_failure=build_on_failure, deploy_name=deploy_name)


def errors_of(text: str) -> dict[str, str]:
    _, errors = parse_spec_text(text, source="rb.yaml")
    return {f"{e.stage}:{e.field}": e.message for e in errors}


# ---- the spec and the DAG ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, where, message",
    [
        (spec("{result: ROLL}"), "Deploy:on_failure.result", "'ROLL' is not one of FAIL, ROLLBACK, RETRY"),
        (spec("{result: FAIL, mode: X}"), "Deploy:on_failure.mode", "unknown key"),
        (spec(build_on_failure="      on_failure: {result: ROLLBACK}\n"), "Build:on_failure.result", "first stage"),
        (spec(deploy_name="Rollback"), "Deploy:name", "has the task Rollback"),
    ],
)
def test_on_failure_errors_name_the_stage_and_field(text, where, message):
    errors = errors_of(text)
    assert where in errors, errors
    assert message in errors[where]


def test_a_stage_that_rolls_back_gets_a_rollback_task_beside_its_actions_that_holds_the_stage():
    dag = build_dag(load_spec_text(spec()))
    rollback = dag.task_dict["Deploy.Rollback"]
    assert rollback.is_teardown and rollback.trigger_rule == "all_done_setup_success"  # runs once they all ended
    assert rollback.upstream_task_ids == set(ACTIONS)
    assert rollback.downstream_task_ids == set()  # the next stage never waits for it
    assert rollback.action_task_ids == ACTIONS and rollback.stage_group == "Deploy"
    assert dag.task_dict["Final.Announce"].upstream_task_ids == {"Deploy.Smoke", "Final.Enter"}
    # The failed run holds the stage while its rollback runs: the door counts the task as one of the stage's.
    assert dag.task_dict["Deploy.Enter"].action_task_ids == [*ACTIONS, "Deploy.Rollback"]
    # A stage's first tasks run after a skipped stage (a rollback run's others), never after a failed one.
    assert dag.task_dict["Deploy.Enter"].trigger_rule == "none_failed"
    assert dag.task_dict["Deploy.Ship"].trigger_rule == "none_failed"
    assert dag.task_dict["Deploy.Smoke"].trigger_rule == "all_success"
    assert dag.task_dict["Build.Compile"].trigger_rule == "all_success"
    without = build_dag(load_spec_text(spec("{result: FAIL}")))
    assert "Deploy.Rollback" not in without.task_dict


# ---- choosing and checking the target ----------------------------------------------------------------------
def run(run_id, minutes, *states, conf=None):
    return Candidate(run_id, T0 + timedelta(minutes=minutes), conf, dict(zip(ACTIONS, states)))


def test_the_target_is_the_latest_run_in_which_the_stage_succeeded():
    runs = [
        run("r1", 1, "success", "success"),
        run("r2", 2, "success", "success"),
        run("r3", 3, "success", "failed"),
        run("r4", 4, "upstream_failed", "upstream_failed"),
    ]
    assert choose_target(runs, "Deploy", ACTIONS, wanted=None, excluding="r3").run_id == "r2"
    assert choose_target(runs, "Deploy", ACTIONS, wanted="r1", excluding="r3").run_id == "r1"
    with pytest.raises(RollbackRefused, match="stage Deploy did not succeed in run r4"):
        choose_target(runs, "Deploy", ACTIONS, wanted="r4", excluding="r3")
    with pytest.raises(RollbackRefused, match="no run 'r9'"):
        choose_target(runs, "Deploy", ACTIONS, wanted="r9", excluding="r3")
    with pytest.raises(RollbackRefused, match="nothing to roll back to"):
        choose_target(runs[2:], "Deploy", ACTIONS, wanted=None, excluding="r3")


def test_a_rollback_run_stands_for_the_run_it_rolled_back_to():
    back_to_r1 = {"rollback": {"stage": "Deploy", "target_run_id": "r1"}}
    runs = [
        run("r1", 1, "success", "success"),
        run("r2", 2, "success", "failed"),
        run("rollback__Deploy__r2", 3, "success", "success", conf=back_to_r1),
    ]
    assert choose_target(runs, "Deploy", ACTIONS, wanted=None, excluding="r5").run_id == "r1"
    assert choose_target(runs, "Deploy", ACTIONS, wanted="rollback__Deploy__r2", excluding=None).run_id == "r1"


def test_a_rollback_run_checks_its_target_deployed_the_stage():
    rollback = Rollback("Deploy", "r1")
    check_target(rollback, "rb", run("r1", 1, "success", "success"), ACTIONS)
    with pytest.raises(RollbackRefused, match="its actions did not all succeed in run r1"):
        check_target(rollback, "rb", run("r1", 1, "success", "failed"), ACTIONS)
    with pytest.raises(RollbackRefused, match="no run 'r1' of this pipeline"):
        check_target(rollback, "rb", None, ACTIONS)
    with pytest.raises(RollbackRefused, match="is a rollback itself; roll back to the run it rolled back to .r0."):
        check_target(
            rollback,
            "rb",
            run("r1", 1, "success", "success", conf=rollback_run_conf({}, Rollback("Deploy", "r0"))),
            ACTIONS,
        )
    with pytest.raises(RollbackRefused, match="cannot roll back to itself"):
        check_target(Rollback("Deploy", "rb"), "rb", run("rb", 1, "success", "success"), ACTIONS)


def test_a_rollback_runs_conf_carries_the_targets_variables_and_a_malformed_one_is_refused():
    conf = rollback_run_conf({"flavour": "lite", "rollback": {"old": 1}}, Rollback("Deploy", "r1", held_by="r2"))
    assert conf == {
        "flavour": "lite",
        "rollback": {"stage": "Deploy", "target_run_id": "r1", "reason": "", "held_by": "r2"},
    }
    assert rollback_of(conf) == Rollback("Deploy", "r1", "r2", "")
    assert rollback_of({"flavour": "x"}) is None
    with pytest.raises(RollbackRefused, match="must be an object with the strings stage and target_run_id"):
        rollback_of({"rollback": {"stage": "Deploy"}})


# ---- a rollback run's tasks ----------------------------------------------------------------------------------
def scope_context(conf):
    return {
        "ti": SimpleNamespace(dag_id="rb", run_id="rb-1", task_id="Build.Compile"),
        "dag_run": SimpleNamespace(run_id="rb-1", conf=conf),
        "dag": SimpleNamespace(task_ids=["Build.Compile", *ACTIONS]),
    }


def test_in_a_rollback_run_only_the_stage_runs_and_only_when_its_target_checks_out(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    sent = []
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=sent.append), raising=False)
    conf = {"rollback": {"stage": "Deploy", "target_run_id": "r1"}}
    RollbackScope("Deploy", ACTIONS)(scope_context({}))  # an ordinary run: nothing to check
    with pytest.raises(AirflowSkipException, match="rollback run of stage Deploy: stage Build does not run"):
        RollbackScope("Build", ["Build.Compile"])(scope_context(conf))
    assert sent == []  # no other stage's task to skip (a pipeline without doors: no door held)
    targets = {"r1": run("r1", 1, "success", "success")}
    monkeypatch.setattr(RollbackScope, "read_target", lambda self, dag_id, run_id: targets.get(run_id))
    RollbackScope("Deploy", ACTIONS)(scope_context(conf))
    targets["r1"] = run("r1", 1, "success", "failed")  # a forged conf naming a run that never deployed
    with pytest.raises(AirflowFailException, match="did not all succeed in run r1"):
        RollbackScope("Deploy", ACTIONS)(scope_context(conf))
    with pytest.raises(AirflowFailException, match="must be an object"):
        RollbackScope("Deploy", ACTIONS)(scope_context({"rollback": "r1"}))


# ---- the failed run's wait for its rollback ------------------------------------------------------------
def watch(monkeypatch, *rounds):
    written: dict = {}
    monkeypatch.setattr(
        "release_orchestrator.triggers.base.write_task_xcom", lambda ti, key, value: written.__setitem__(key, value)
    )
    monkeypatch.setattr("release_orchestrator.triggers.base.announce_failure", lambda *args: None)
    states = iter(rounds)
    trigger = StageRollbackTrigger(
        dag_id="rb",
        stage="Deploy",
        rollback_run_id="rollback__Deploy__r2",
        target_run_id="r1",
        action_task_ids=ACTIONS,
        check_interval=0.01,
    )
    monkeypatch.setattr(trigger, "read_states", lambda: next(states))
    trigger.task_instance = SimpleNamespace(dag_id="rb", task_id="Deploy.Rollback", run_id="r2")

    async def first():
        async for event in trigger.run():
            return event

    event = asyncio.run(first())
    assert list(states) == [], "the wait ended before the last round"
    return event, written


def test_the_failed_run_waits_until_its_rollbacks_actions_have_ended(monkeypatch):
    event, written = watch(
        monkeypatch,
        {},  # the scheduler has not started the rollback run yet
        {"Deploy.Ship": "running", "Deploy.Smoke": None},
        {"Deploy.Ship": "success", "Deploy.Smoke": "success"},
    )
    assert isinstance(event, TaskSuccessEvent)
    assert written["return_value"] == {
        "RollbackRunId": "rollback__Deploy__r2",
        "TargetRunId": "r1",
        "Result": "Succeeded",
    }
    # The rollback run still holds the stage (its success conditions and Rollback to end): the wait goes on,
    # or a run waiting at the door would go in while the stage is taken. A skipped check is no failure.
    done = {"Deploy.Ship": "success", "Deploy.Smoke": "success"}
    event, written = watch(
        monkeypatch,
        {**done, "Deploy.SuccessConditions": None, "Deploy.Rollback": None},
        {**done, "Deploy.SuccessConditions": "skipped", "Deploy.Rollback": None},
        {**done, "Deploy.SuccessConditions": "skipped", "Deploy.Rollback": "skipped"},
    )
    assert isinstance(event, TaskSuccessEvent) and written["return_value"]["Result"] == "Succeeded"
    event, written = watch(monkeypatch, {"Deploy.Ship": "success", "Deploy.Smoke": "failed"})
    assert isinstance(event, TaskFailedEvent)
    assert written["return_value"]["Result"] == "Failed"
    assert (
        "the rollback of stage Deploy to run r1 (run rollback__Deploy__r2) failed: Deploy.Smoke failed"
        in (written["failure_reason"])
    )


def test_a_rollback_run_at_a_door_supersedes_no_release_but_a_newer_release_supersedes_it():
    from release_orchestrator.stages.entry import Door, decide

    door = Door("Deploy", "Deploy.Enter", tuple(ACTIONS), "SUPERSEDED")
    rollback = "rollback__Deploy__2026-12-01T12:05:00"
    order = {"r1": (T0, "r1"), rollback: (T0 + timedelta(minutes=5), rollback), "r3": (T0 + timedelta(minutes=9), "r3")}
    waiting = {"Deploy.Enter": "scheduled"}
    runs = {"r1": {"Deploy.Enter": "deferred"}, rollback: waiting}
    assert decide(door, "r1", runs, order.get, may_yield=False).kind == "enter"
    runs = {rollback: {"Deploy.Enter": "deferred"}, "r3": waiting}
    assert decide(door, rollback, runs, order.get, may_yield=False).kind == "superseded"


def test_the_first_task_of_another_stage_skips_the_rest_of_the_rollback_run_at_once(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    from release_orchestrator.stages import rollback as module

    sent = []
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=sent.append), raising=False)
    dag = build_dag(load_spec_text(spec()))
    context = {
        "ti": SimpleNamespace(dag_id="rb", run_id="rb-1", task_id="Build.Enter"),
        "dag_run": SimpleNamespace(run_id="rb-1", conf={"rollback": {"stage": "Deploy", "target_run_id": "r1"}}),
        "dag": dag,
    }
    held = {"now": False}
    monkeypatch.setattr(module, "held_for", lambda dag_id, run_id, rollback: held["now"])
    module.skip_other_stages(context, rollback_of(context["dag_run"].conf))
    assert sorted(sent[-1].tasks) == ["Build.Compile", "Final.Announce", "Final.Enter"]
    held["now"] = True  # the failed run holds Deploy for this rollback: its door is skipped too
    module.skip_other_stages(context, rollback_of(context["dag_run"].conf))
    assert sorted(sent[-1].tasks) == ["Build.Compile", "Deploy.Enter", "Final.Announce", "Final.Enter"]


def test_after_a_rollback_the_last_release_is_the_run_it_rolled_back_to(monkeypatch):
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import DagRunResult

    from release_orchestrator.releases import last_release

    def run_result(run_id, minutes, conf=None):
        at = T0 + timedelta(minutes=minutes)
        return DagRunResult(
            dag_id="rb", run_id=run_id, logical_date=None, data_interval_start=None, data_interval_end=None,
            run_after=at, start_date=at, end_date=at, run_type="manual", state="success", conf=conf,
            consumed_asset_events=[], partition_key=None,
        )  # fmt: skip

    runs = {
        "r1": run_result("r1", 1),
        "r2": run_result("r2", 2),
        "rollback__Deploy__r2": run_result(
            "rollback__Deploy__r2", 3, {"rollback": {"stage": "Deploy", "target_run_id": "r1"}}
        ),
    }
    states = {
        "r1": {"Deploy.Ship": "success"},
        "r2": {"Deploy.Ship": "failed"},
        "rollback__Deploy__r2": {"Deploy.Ship": "success"},
    }
    monkeypatch.setattr(task_runner.RuntimeTaskInstance, "get_task_states", staticmethod(lambda **kwargs: states))
    monkeypatch.setattr(
        task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=lambda msg: runs[msg.run_id]), raising=False
    )
    assert last_release("rb", ["Deploy.Ship"], "r4") == "r1"
