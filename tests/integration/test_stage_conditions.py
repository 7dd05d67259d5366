"""Entry conditions in the real Airflow processes (tests/integration/pipelines/cond-gates.yaml): a deployment
window holds a run until it opens, an alarm in ALARM fails the stage, a variable check skips a stage and the
run goes on. Three runs at once (PARALLEL), each started with its own variables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.helpers import aws_client, put_alarm, ti_states, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "cond-gates"


@pytest.fixture(scope="module")
def alarms(airflow_env, api):
    api.wait_for_dag(PIPELINE, timeout=240)
    cloudwatch = aws_client(airflow_env, "cloudwatch")
    for name, state in (("cond-quiet", "OK"), ("cond-firing", "ALARM")):
        put_alarm(cloudwatch, name, state)
    return cloudwatch


def started(api, run_id: str, task_id: str) -> datetime:
    ti = next(t for t in api.task_instances(PIPELINE, run_id) if t["task_id"] == task_id)
    return datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00"))


def test_windows_alarms_and_variable_checks_hold_fail_or_skip_a_stage(api, alarms):
    # A window that opens at the start of the next minute at least 12 s away (its cron is by the minute).
    now = datetime.now(timezone.utc)
    opens = (now + timedelta(minutes=2 if now.second > 48 else 1)).replace(second=0, microsecond=0)
    waits = api.trigger(PIPELINE, conf={"window": f"* {opens.minute} {opens.hour} ? * *"})["dag_run_id"]
    firing = api.trigger(PIPELINE, conf={"alarm": "cond-firing"})["dag_run_id"]
    lite = api.trigger(PIPELINE, conf={"flavour": "lite"})["dag_run_id"]

    # The alarm in ALARM fails Deploy before its action, naming the rule and the alarm.
    run = wait_for_run(api, PIPELINE, firing, timeout=240)
    states = ti_states(api, PIPELINE, firing)
    assert run["state"] == "failed"
    assert (states["Deploy.Conditions"], states["Deploy.Ship"]) == ("failed", "upstream_failed"), states
    reason = api.xcom(PIPELINE, firing, "Deploy.Conditions")
    assert reason["Result"] == "FAILED"
    assert [r["detail"] for r in reason["Rules"] if not r["passed"]] == ["alarm 'cond-firing' is in state ALARM"]

    # A run that is not a full release skips Extras (its check and its action) and goes on to Final.
    run = wait_for_run(api, PIPELINE, lite, timeout=240)
    states = ti_states(api, PIPELINE, lite)
    assert run["state"] == "success", states
    assert (states["Extras.Conditions"], states["Extras.Smoke"], states["Final.Announce"]) == (
        "skipped",
        "skipped",
        "success",
    )
    skipped = api.xcom(PIPELINE, lite, "Extras.Conditions")
    assert skipped["Result"] == "SKIPPED" and skipped["Rules"][0] == {
        "rule": "FullRelease",
        "type": "VariableCheck",
        "passed": False,
        "detail": "'lite' EQ 'full' is false",
    }

    # The window: Deploy's check waits (deferred, no worker slot) until the minute it opens, then the stage runs.
    run = wait_for_run(api, PIPELINE, waits, timeout=240)
    assert run["state"] == "success", ti_states(api, PIPELINE, waits)
    assert started(api, waits, "Deploy.Ship") >= opens
    entered = api.xcom(PIPELINE, waits, "Deploy.Conditions")
    assert entered["Result"] == "ENTERED"
    assert [r["rule"] for r in entered["Rules"] if r["passed"]] == ["Window", "Healthy"]
    if started(api, waits, "Deploy.Conditions") < opens - timedelta(seconds=2):
        assert entered["WaitedSeconds"] > 0  # it waited in the triggerer, which ended the task
    # The full release ran its Extras: the variable matched and the release-check function passed.
    extras = api.xcom(PIPELINE, waits, "Extras.Conditions")
    assert extras["Result"] == "ENTERED"
    assert extras["Rules"][1]["detail"] == "function 'release-check' passed"
