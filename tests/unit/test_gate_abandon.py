"""The api-server stops the work of a waiting action a user abandons (gate/abandon.py)."""

from types import SimpleNamespace

import pytest

from release_orchestrator.gate import abandon
from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

CODEBUILD = f"{CodeBuildBuildTrigger.__module__}.{CodeBuildBuildTrigger.__qualname__}"


class FakeSession:
    def __init__(self, trigger):
        self.info: dict = {}
        self.trigger = trigger

    def get(self, model, key):
        return self.trigger if key == 7 else None


def ti(trigger_id=7):
    return SimpleNamespace(dag_id="webapp-release", run_id="r1", task_id="Build.Compile", trigger_id=trigger_id)


TRIGGER = SimpleNamespace(classpath=CODEBUILD, kwargs={"build_id": "webapp:1"})


@pytest.mark.parametrize(
    ("before", "after", "noted"),
    [
        ("deferred", "failed", True),  # marked failed, alone or with its run
        ("deferred", "skipped", True),
        ("deferred", "success", False),  # marked success: the work goes on
        ("deferred", None, False),  # cleared: the next try reattaches to it
        ("running", "failed", False),  # a worker runs it: Airflow kills it, its on_kill stops the work
    ],
)
def test_only_a_waiting_action_abandoned_is_noted_once(before, after, noted):
    session = FakeSession(TRIGGER)
    abandon.note_if_abandoned(session, ti(), before, after)
    abandon.note_if_abandoned(session, ti(), before, after)  # a second flush of the same change
    pending = session.info.get(abandon._PENDING, {})
    assert list(pending.values()) == (
        [(CODEBUILD, {"build_id": "webapp:1"}, "webapp-release r1 Build.Compile")] if noted else []
    )


def test_a_rollback_forgets_what_was_noted():
    session = FakeSession(TRIGGER)
    abandon.note_if_abandoned(session, ti(), "deferred", "failed")
    abandon._after_rollback(session)
    assert abandon._PENDING not in session.info


def test_stop_rebuilds_the_trigger_and_stops_its_work(monkeypatch):
    stopped = []
    monkeypatch.setattr(CodeBuildBuildTrigger, "stop", lambda self: stopped.append(self.build_id))
    abandon.stop(CODEBUILD, {"build_id": "webapp:1", "aws_conn_id": None}, "webapp-release r1 Build.Compile")
    assert stopped == ["webapp:1"]


def test_a_trigger_without_work_to_stop_is_left_alone(monkeypatch, caplog):
    from release_orchestrator.triggers.approval import ApprovalWaitTrigger

    classpath = f"{ApprovalWaitTrigger.__module__}.{ApprovalWaitTrigger.__qualname__}"
    abandon.stop(classpath, {"no": "arguments it takes"}, "webapp-release r1 Approval.SignOff")  # not even built
    abandon.stop("release_orchestrator.nowhere.Trigger", {}, "x")  # unknown: logged, nothing raised
    assert "Could not stop the work of x" in caplog.text
