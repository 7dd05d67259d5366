"""Elastic Beanstalk hook, operator and trigger against a recording stand-in of the service (moto has no
application versions, updates or events; the sandbox tests cover those over HTTP)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from unittest import mock

import boto3
import pytest
import yaml
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent
from botocore.exceptions import ClientError

from release_orchestrator.hooks.elasticbeanstalk import ElasticBeanstalkHook
from release_orchestrator.operators.elasticbeanstalk import ElasticBeanstalkOperator
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.elasticbeanstalk import ElasticBeanstalkEnvironmentTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance, task_context

SOURCE = "s3://release-artifacts/webapp/app-1.2.3.zip"


class FakeBeanstalk:
    """The Elastic Beanstalk calls the hook makes, answered from one environment 'webapp/production'."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.versions: dict[str, dict] = {}
        self.events: list[dict] = []
        self.environment = {
            "EnvironmentId": "e-1",
            "EnvironmentName": "production",
            "ApplicationName": "webapp",
            "VersionLabel": "v1",
            "Status": "Ready",
            "Health": "Green",
            "CNAME": "production.us-east-1.elasticbeanstalk.com",
        }

    def _call(self, name, kwargs):
        self.calls.append((name, kwargs))

    def named(self, name):
        return [kwargs for call, kwargs in self.calls if call == name]

    def describe_application_versions(self, **kwargs):
        self._call("DescribeApplicationVersions", kwargs)
        return {"ApplicationVersions": [self.versions[v] for v in kwargs["VersionLabels"] if v in self.versions]}

    def create_application_version(self, **kwargs):
        self._call("CreateApplicationVersion", kwargs)
        self.versions[kwargs["VersionLabel"]] = dict(kwargs)
        return {"ApplicationVersion": dict(kwargs)}

    def describe_environments(self, **kwargs):
        self._call("DescribeEnvironments", kwargs)
        env = self.environment
        wanted = kwargs.get("EnvironmentIds") or [env["EnvironmentId"]]
        names = kwargs.get("EnvironmentNames") or [env["EnvironmentName"]]
        found = env["EnvironmentId"] in wanted and env["EnvironmentName"] in names
        return {"Environments": [dict(env)] if found else []}

    def update_environment(self, **kwargs):
        self._call("UpdateEnvironment", kwargs)
        if self.environment["Status"] != "Ready":
            raise ClientError(
                {"Error": {"Code": "InvalidParameterValue", "Message": "Environment is in an invalid state"}},
                "UpdateEnvironment",
            )
        self.environment.update(Status="Updating", VersionLabel=kwargs["VersionLabel"], Health="Grey")
        return dict(self.environment)

    def abort_environment_update(self, **kwargs):
        self._call("AbortEnvironmentUpdate", kwargs)
        return {}

    def describe_events(self, **kwargs):
        self._call("DescribeEvents", kwargs)
        return {"Events": list(self.events)}


@pytest.fixture(autouse=True)
def eb(moto_aws):
    poller_module.reset_pollers()
    fake = FakeBeanstalk()
    # The hook reads region and partition (for links) from conn.meta.client.
    fake.meta = SimpleNamespace(client=boto3.client("elasticbeanstalk", region_name="us-east-1"))
    with mock.patch.object(ElasticBeanstalkHook, "conn", new=fake):
        yield fake


def operator(**kwargs):
    kwargs.setdefault("source", SOURCE)
    return ElasticBeanstalkOperator(
        task_id="deploy", application_name="webapp", environment_name="production", **kwargs
    )


def deferred_on(op, context) -> ElasticBeanstalkEnvironmentTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    trigger.poll_interval = 0.01
    return trigger


# --- hook -------------------------------------------------------------------------------------


def test_hook_names_call_and_resource_in_errors(eb):
    eb.environment["Status"] = "Updating"
    with pytest.raises(
        AirflowException,
        match=r"UpdateEnvironment on environment 'webapp/production' failed: InvalidParameterValue: Environment is",
    ):
        ElasticBeanstalkHook().update_environment("webapp", "production", "v2")


# --- deploy -----------------------------------------------------------------------------------


def test_creates_the_version_updates_the_environment_and_defers(eb, context, store):
    op = operator(poll_interval=7)
    trigger = deferred_on(op, context)
    label = op.version_label(context, 0)
    assert label.startswith("webapp-") and len(label) <= 100
    (create,) = eb.named("CreateApplicationVersion")
    assert create == {
        "ApplicationName": "webapp",
        "VersionLabel": label,
        "Description": f"webapp {context['ti'].run_id} Build.Compile",
        "SourceBundle": {"S3Bucket": "release-artifacts", "S3Key": "webapp/app-1.2.3.zip"},
        "Process": False,
    }
    assert eb.named("UpdateEnvironment") == [
        {"ApplicationName": "webapp", "EnvironmentName": "production", "VersionLabel": label}
    ]
    assert isinstance(trigger, ElasticBeanstalkEnvironmentTrigger) and trigger.item_id == "e-1"
    assert trigger.result == op.result(label, store.data["elasticbeanstalk_update"]["since"]).to_dict()
    assert store.data["elasticbeanstalk_update"]["label"] == label
    assert context["ti"].xcom["_elasticbeanstalk_environment"]["environment_id"] == "e-1"


def test_a_retry_reattaches_to_the_update_it_recorded(eb, context):
    first = deferred_on(operator(), context)
    second = deferred_on(operator(), context)
    assert second.item_id == first.item_id
    assert len(eb.named("CreateApplicationVersion")) == len(eb.named("UpdateEnvironment")) == 1


def test_a_retry_that_lost_its_record_reuses_the_version_and_waits_for_its_update(eb, context):
    deferred_on(operator(), context)
    lost = task_context(FakeTaskInstance(), FakeStateStore())
    deferred_on(operator(), lost)
    assert len(eb.named("CreateApplicationVersion")) == len(eb.named("UpdateEnvironment")) == 1


def test_a_new_try_after_the_update_ended_deploys_anew(eb, context, store):
    op = operator()
    deferred_on(op, context)
    eb.environment.update(Status="Ready", Health="Green")  # the trigger reported it; the task is cleared
    deferred_on(operator(), context)
    assert [c["VersionLabel"] for c in eb.named("UpdateEnvironment")] == [
        op.version_label(context, 0),
        op.version_label(context, 1),
    ]
    assert store.data["elasticbeanstalk_update"]["generation"] == 1


def test_bad_source_or_missing_environment_creates_nothing(eb, context):
    with pytest.raises(ValueError, match="source must be an S3 object as s3://bucket/key, not 'webapp.zip'"):
        operator(source="webapp.zip").execute(context)
    assert eb.calls == []
    with pytest.raises(AirflowException, match="DescribeEnvironments on environment 'webapp/staging' found no"):
        ElasticBeanstalkOperator(
            task_id="deploy", application_name="webapp", environment_name="staging", source=SOURCE
        ).execute(context)
    assert eb.named("UpdateEnvironment") == []


def test_without_deferring_it_waits_in_the_worker_and_returns_the_outputs(eb, context):
    op = operator(deferrable=False)

    def waited(EnvironmentIds, WaiterConfig):  # noqa: N803 - the waiter's own argument names
        eb.environment.update(Status="Ready", Health="Green")

    with mock.patch.object(ElasticBeanstalkHook, "get_waiter") as get_waiter:
        get_waiter.return_value.wait.side_effect = waited
        outputs = op.execute(context)
    get_waiter.assert_called_once_with("environment_settled")
    assert outputs["VersionLabel"] == op.version_label(context, 0)


def test_on_kill_aborts_the_update(eb, context):
    op = operator()
    deferred_on(op, context)
    op.on_kill()
    assert eb.named("AbortEnvironmentUpdate") == [{"EnvironmentId": "e-1"}]


# --- trigger ----------------------------------------------------------------------------------


def test_trigger_serialize_round_trips():
    trigger = ElasticBeanstalkEnvironmentTrigger(environment_id="e-1", aws_conn_id="prod", region_name="eu-west-1")
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.triggers.elasticbeanstalk.ElasticBeanstalkEnvironmentTrigger"
    assert ElasticBeanstalkEnvironmentTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_ends_the_task_with_the_outputs_once_ready_on_the_version(eb, context, task_xcoms):
    op = operator()
    trigger = deferred_on(op, context)
    label = op.version_label(context, 0)

    async def run():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        while len(eb.named("DescribeEnvironments")) < 3:  # the update is looked at while it runs
            await asyncio.sleep(0.01)
        assert not waiting.done()
        eb.environment.update(Status="Ready", Health="Green")
        return await waiting

    event = asyncio.run(run())
    assert isinstance(event, TaskSuccessEvent)
    outputs = task_xcoms[("e-1", "return_value")]
    assert {k: v for k, v in outputs.items() if k != "ConsoleUrl"} == {
        "ApplicationName": "webapp",
        "EnvironmentName": "production",
        "EnvironmentId": "e-1",
        "VersionLabel": label,
        "EnvironmentUrl": "http://production.us-east-1.elasticbeanstalk.com",
    }
    assert outputs["ConsoleUrl"].endswith(
        "/elasticbeanstalk/home?region=us-east-1#/environment/dashboard?environmentId=e-1"
    )


@pytest.mark.parametrize(
    "end, expected",
    [
        (
            {"Health": "Red"},
            "environment Ready, health Red; events: ERROR: Instance deployment failed | ERROR: Failed to deploy application.",
        ),
        ({"Health": "Green", "VersionLabel": "v1"}, "environment Ready, health Green, back on version v1; events:"),
    ],
)
def test_trigger_fails_the_task_with_the_error_events(eb, context, task_xcoms, end, expected):
    op = operator()
    trigger = deferred_on(op, context)
    eb.environment.update(Status="Ready", **end)
    eb.events = [  # newest first, as DescribeEvents answers
        {"Severity": "ERROR", "Message": "Failed to deploy application."},
        {"Severity": "ERROR", "Message": "Instance deployment failed"},
    ]
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    reason = task_xcoms[("e-1", "failure_reason")]
    assert reason.startswith(
        f"Deploying version {op.version_label(context, 0)} to environment webapp/production failed; "
    )
    assert expected in reason
    (events_call,) = eb.named("DescribeEvents")
    assert events_call["EnvironmentId"] == "e-1" and events_call["Severity"] == "ERROR" and "StartTime" in events_call


def test_trigger_on_kill_aborts_when_marked_failed(eb):
    trigger = ElasticBeanstalkEnvironmentTrigger(environment_id="e-1")
    trigger._task_instance = FakeTaskInstance()
    with mock.patch.object(ElasticBeanstalkEnvironmentTrigger, "_task_state", return_value="failed"):
        asyncio.run(trigger.on_kill())
    assert eb.named("AbortEnvironmentUpdate") == [{"EnvironmentId": "e-1"}]


# --- validation -------------------------------------------------------------------------------


def spec_errors(configuration):
    spec = {
        "pipeline": {
            "name": "webapp",
            "stages": [
                {
                    "name": "Deploy",
                    "actions": [
                        {"name": "Beanstalk", "type": "deploy.elasticbeanstalk", "configuration": configuration}
                    ],
                }
            ],
        }
    }
    _, errors = parse_spec_text(yaml.safe_dump(spec, sort_keys=False), "x.yaml")
    return [(e.stage, e.action, e.field, e.message) for e in errors]


GOOD = {"application_name": "webapp", "environment_name": "production", "source": SOURCE}


@pytest.mark.parametrize(
    "configuration, field, message",
    [
        ({**GOOD, "source": None}, "configuration.source", "expected a string"),
        (
            {k: v for k, v in GOOD.items() if k != "environment_name"},
            "configuration.environment_name",
            "missing required key",
        ),
        (
            {**GOOD, "source": "release-artifacts/app.zip"},
            "configuration.source",
            "expected an S3 object URI",
        ),
        ({**GOOD, "source": "s3://release-artifacts/"}, "configuration.source", "expected an S3 object URI"),
    ],
)
def test_bad_configurations_name_stage_action_and_field(configuration, field, message):
    errors = spec_errors(configuration)
    assert any((s, a, f) == ("Deploy", "Beanstalk", field) and message in m for s, a, f, m in errors), errors


def test_good_configuration_validates():
    assert spec_errors({**GOOD, "source": "s3://release-artifacts/#{codepipeline.PipelineExecutionId}.zip"}) == []
