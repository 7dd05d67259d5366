"""The release console's pure parts: DORA's four keys and a stage's state from its actions' states."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from release_orchestrator.ui.queries import Finished, _superseded_by, door_wait, dora_keys, stage_state

SINCE = datetime(2026, 11, 1, tzinfo=timezone.utc)


def at(day: int, hour: int = 12) -> datetime:
    return SINCE + timedelta(days=day, hours=hour)


def test_the_four_keys():
    runs = [
        Finished("web", True, at(1), committed=at(1, 10)),  # lead time 2 h
        Finished("web", False, at(2), deploy_failed=True),  # a failed change ...
        Finished("web", True, at(2, 18), committed=at(2, 6)),  # ... restored 6 h later, lead time 12 h
        Finished("web", False, at(3)),  # failed before deploying (a build): not a failed change
        Finished("api", True, at(3), committed=None),  # no commit time: counts as a deployment only
        Finished("api", False, at(4), deploy_failed=True),  # never restored in the window
    ]
    keys = dora_keys(runs, days=10, since=SINCE)
    assert keys["deployments"] == 3 and keys["deployment_frequency_per_day"] == 0.3
    assert keys["lead_time_hours_median"] == 7.0  # median of 2 h and 12 h
    assert keys["failed_deployments"] == 2 and keys["change_failure_rate"] == 0.4  # 2 of 3 + 2
    assert keys["time_to_restore_hours_median"] == 6.0  # api's failure has no later success: left out
    per_day = {d["day"]: d["count"] for d in keys["deployments_per_day"]}
    assert len(per_day) == 10 and per_day["2026-11-02"] == 1 and per_day["2026-11-03"] == 1
    assert sum(per_day.values()) == 3


def test_a_pipeline_with_no_finished_run_has_no_rates():
    keys = dora_keys([], days=30, since=SINCE)
    assert keys["deployments"] == 0 and keys["deployment_frequency_per_day"] == 0
    assert keys["lead_time_hours_median"] is None and keys["change_failure_rate"] is None
    assert keys["time_to_restore_hours_median"] is None and len(keys["deployments_per_day"]) == 30


def test_restore_is_measured_to_the_same_pipelines_next_success():
    runs = [
        Finished("web", False, at(1), deploy_failed=True),
        Finished("api", True, at(1, 13)),  # another pipeline's success restores nothing of web
        Finished("web", True, at(1, 16)),
        Finished("web", True, at(1, 20)),
    ]
    assert dora_keys(runs, days=5, since=SINCE)["time_to_restore_hours_median"] == 4.0


@pytest.mark.parametrize(
    "states, expected",
    [
        (["success", "success"], "succeeded"),
        (["success", "failed"], "failed"),
        (["success", "upstream_failed"], "failed"),
        (["success", "deferred"], "running"),
        (["success", None], "running"),  # the next run order has not started yet
        ([None, None], "not started"),
        (["skipped"], "skipped"),
        ([], "not started"),
    ],
)
def test_stage_state(states, expected):
    assert stage_state(states) == expected


def test_a_run_waiting_at_a_door_and_a_superseded_run_read_as_such():
    def stage(enter_state):
        return [{"name": "Enter", "state": enter_state}, {"name": "Compile", "state": None}]

    assert door_wait(stage("deferred")) == "waiting at the door for the stage to be free"
    assert door_wait(stage("scheduled")) == "waiting in line at the door"
    assert door_wait(stage("success")) is None
    assert door_wait([{"name": "Compile", "state": "running"}]) is None  # no door (PARALLEL)
    assert _superseded_by({"approval_decision": {"Outcome": "Superseded", "SupersededBy": "r3"}}) == "r3"
    assert _superseded_by({"approval_decision": {"Outcome": "Approved"}}) is None
    assert _superseded_by({}) is None
