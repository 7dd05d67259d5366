"""CloudFormation (deploy.cloudformation): hook, operator, triggers and validation against moto."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from unittest import mock

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent
from botocore.client import BaseClient
from moto.cloudformation.models import Event, cloudformation_backends

from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.hooks.cloudformation import StackHook
from release_orchestrator.operators.cloudformation import CloudFormationOperator
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.results.cloudformation import StackResult
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.cloudformation import CloudFormationChangeSetTrigger, CloudFormationStackTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/cfn-deploy"
TEMPLATE = {
    "Parameters": {"Value": {"Type": "String"}, "Env": {"Type": "String", "Default": "dev"}},
    "Resources": {
        "Setting": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Name": "/webapp/setting", "Type": "String", "Value": {"Ref": "Value"}},
        }
    },
    "Outputs": {"SettingName": {"Value": {"Ref": "Setting"}}},
}


@pytest.fixture
def aws(moto_aws, monkeypatch):
    """moto; one hook for every operator and result of a test (building one reads the connection: slow)."""
    poller_module.reset_pollers()
    hook = StackHook()
    monkeypatch.setattr(CloudFormationOperator, "hook", property(lambda self: hook))
    monkeypatch.setattr(StackResult, "hook", property(lambda self: hook))


class FakeTI(FakeTaskInstance):
    task_id = "Infra.Stack"


@pytest.fixture
def store():
    return FakeStateStore()


@pytest.fixture
def context(aws, store):
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti, "task_state_store": store, "run_id": ti.run_id}


@pytest.fixture
def calls(monkeypatch):
    """(operation, params) of every CloudFormation request, in order."""
    made: list[tuple[str, dict]] = []
    send = BaseClient._make_api_call

    def recording(client, operation, params):
        if client.meta.service_model.service_name == "cloudformation":
            made.append((operation, dict(params)))
        return send(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return made


@pytest.fixture
def op_log(monkeypatch):
    """The operators' logger (Airflow's task logger does not reach caplog)."""
    log = mock.MagicMock()
    monkeypatch.setattr(CloudFormationOperator, "log", log)
    return log


def logged(method) -> str:
    """What `method` of a mock logger was called with, %-formatted, one call a line."""
    return "\n".join(str(c.args[0]) % c.args[1:] for c in method.call_args_list)


def writes(calls):
    """The operations that change something (not Describe*)."""
    return [operation for operation, _ in calls if not operation.startswith("Describe")]


def operator(**kwargs):
    kwargs.setdefault("task_id", "stack")
    kwargs.setdefault("action_mode", "CREATE_UPDATE")
    kwargs.setdefault("stack_name", "webapp")
    if kwargs["action_mode"] in ("CREATE_UPDATE", "REPLACE_ON_FAILURE", "CHANGE_SET_REPLACE"):
        kwargs.setdefault("template", TEMPLATE)
        kwargs.setdefault("parameter_overrides", {"Value": "one", "Env": "dev"})
    return CloudFormationOperator(**kwargs)


def moto_stack(name_or_id):
    backend = cloudformation_backends[ACCOUNT][REGION]
    return backend.stacks.get(name_or_id) or next(s for s in backend.stacks.values() if s.name == name_or_id)


def deferred_on(op, context):
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value.trigger


def slow(monkeypatch, method, status):
    """Make StackHook.`method` leave the stack at `status`, as real CloudFormation does for a while."""
    real = getattr(StackHook, method)

    def leave_in_progress(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        stack_id = answer if isinstance(answer, str) and ":stack/" in answer else None
        moto_stack(stack_id or "webapp").status = status
        return answer

    monkeypatch.setattr(StackHook, method, leave_in_progress)


# --- action modes -----------------------------------------------------------------------------


def test_create_update_creates_a_missing_stack_with_file_template_configuration_and_overrides(tmp_path, context, calls):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "webapp.json").write_text(json.dumps(TEMPLATE))
    configuration = {
        "Parameters": {"Value": "from-configuration", "Env": "staging"},
        "Tags": {"team": "web"},
        "StackPolicy": {"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}]},
    }
    (tmp_path / "infra" / "staging.json").write_text(json.dumps(configuration))
    op = operator(
        template="infra/webapp.json",
        template_configuration="infra/staging.json",
        parameter_overrides={"Value": "override"},
        capabilities=["CAPABILITY_IAM"],
        role_arn=ROLE,
        spec_folder=str(tmp_path),
    )
    outputs = op.execute(context)

    assert writes(calls) == ["CreateStack"]
    (request,) = [params for operation, params in calls if operation == "CreateStack"]
    assert request["TemplateBody"] == json.dumps(TEMPLATE)
    assert request["Parameters"] == [
        {"ParameterKey": "Value", "ParameterValue": "override"},  # the override wins over the configuration
        {"ParameterKey": "Env", "ParameterValue": "staging"},
    ]
    assert request["Tags"] == [{"Key": "team", "Value": "web"}]
    assert json.loads(request["StackPolicyBody"]) == configuration["StackPolicy"]
    assert (request["Capabilities"], request["RoleARN"]) == (["CAPABILITY_IAM"], ROLE)
    assert request["ClientRequestToken"] == op.request_token(context, 0)
    # moto creates at once: the outputs come without a wait, the stack's outputs among them.
    assert outputs["SettingName"] == "/webapp/setting"
    assert (outputs["StackName"], outputs["StackStatus"], outputs["ChangeSetId"]) == ("webapp", "CREATE_COMPLETE", "")
    assert outputs["StackId"].startswith(f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/webapp/")
    assert outputs["ConsoleUrl"].startswith(f"https://console.aws.amazon.com/cloudformation/home?region={REGION}")
    assert context["task_state_store"].data["cloudformation_stack"]["reported"] is True


def test_create_update_updates_and_no_updates_is_a_success(context, calls):
    first = operator().execute(context)
    unchanged = operator().execute(context)
    assert writes(calls) == ["CreateStack", "UpdateStack"]  # CloudFormation said there was nothing to update
    assert unchanged["StackStatus"] == "CREATE_COMPLETE" and unchanged["StackId"] == first["StackId"]

    changed = operator(parameter_overrides={"Value": "two", "Env": "dev"}).execute(context)
    assert writes(calls)[-1] == "UpdateStack" and changed["StackStatus"] == "UPDATE_COMPLETE"
    assert boto3.client("ssm", region_name=REGION).get_parameter(Name="/webapp/setting")["Parameter"]["Value"] == "two"


def test_a_stack_in_rollback_complete_fails_create_update_and_is_replaced_by_replace_on_failure(context, calls):
    old_id = operator().execute(context)["StackId"]
    moto_stack(old_id).status = "ROLLBACK_COMPLETE"
    with pytest.raises(AirflowException, match="ROLLBACK_COMPLETE and cannot be updated.*REPLACE_ON_FAILURE"):
        operator().execute(context)
    assert writes(calls) == ["CreateStack"]

    replaced = operator(action_mode="REPLACE_ON_FAILURE").execute(context)
    assert writes(calls) == ["CreateStack", "DeleteStack", "CreateStack"]
    assert replaced["StackStatus"] == "CREATE_COMPLETE" and replaced["StackId"] != old_id


def test_delete_only_deletes_and_a_missing_stack_is_a_success(context, calls):
    stack_id = operator().execute(context)["StackId"]
    deleted = operator(action_mode="DELETE_ONLY", role_arn=ROLE).execute(context)
    (request,) = [params for operation, params in calls if operation == "DeleteStack"]
    assert request == {"StackName": stack_id, "ClientRequestToken": request["ClientRequestToken"], "RoleARN": ROLE}
    assert (deleted["StackStatus"], deleted["StackId"]) == ("DELETE_COMPLETE", stack_id)
    assert "SettingName" not in deleted  # a deleted stack has no outputs

    again = operator(action_mode="DELETE_ONLY").execute(context)
    assert writes(calls) == ["CreateStack", "DeleteStack"]
    assert again == {"StackName": "webapp", "StackId": "", "StackStatus": "", "ChangeSetId": "", "ConsoleUrl": ""}


def test_change_set_replace_creates_replaces_and_execute_runs_it(context, calls):
    created = operator(action_mode="CHANGE_SET_REPLACE", change_set_name="release").execute(context)
    request = next(params for operation, params in calls if operation == "CreateChangeSet")
    assert (request["ChangeSetType"], request["ChangeSetName"]) == ("CREATE", "release")
    assert request["ClientToken"] == CloudFormationOperator.request_token(None, context, 0)
    assert created["ChangeSetId"].startswith(f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/release/")

    executed = operator(action_mode="CHANGE_SET_EXECUTE", change_set_name="release").execute(context)
    assert writes(calls) == ["CreateChangeSet", "ExecuteChangeSet"]
    assert (executed["StackStatus"], executed["ChangeSetId"]) == ("CREATE_COMPLETE", created["ChangeSetId"])

    again = operator(action_mode="CHANGE_SET_REPLACE", change_set_name="release", parameter_overrides={"Value": "2"})
    replaced = again.execute(context)
    assert writes(calls)[-2:] == ["DeleteChangeSet", "CreateChangeSet"]  # the one of the same name goes first
    assert [p["ChangeSetType"] for o, p in calls if o == "CreateChangeSet"] == ["CREATE", "UPDATE"]
    assert replaced["ChangeSetId"] != created["ChangeSetId"]


def test_a_change_set_without_changes_says_so_and_executing_it_does_nothing(monkeypatch, context, calls, op_log):
    operator().execute(context)
    real = StackHook.create_change_set_with

    def without_changes(self, params):  # as CloudFormation answers: a FAILED change set saying why
        change_set_id, stack_id = real(self, {**params, "Parameters": []})
        change_set = cloudformation_backends[ACCOUNT][REGION].change_sets[change_set_id]
        change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
        change_set.status_reason = "The submitted information didn't contain changes. Submit different information."
        return change_set_id, stack_id

    monkeypatch.setattr(StackHook, "create_change_set_with", without_changes)
    outputs = operator(action_mode="CHANGE_SET_REPLACE", change_set_name="noop").execute(context)
    assert outputs["StackStatus"] == "CREATE_COMPLETE" and outputs["ChangeSetId"]
    assert "contains no changes: there is nothing to execute" in logged(op_log.info)

    executed = operator(action_mode="CHANGE_SET_EXECUTE", change_set_name="noop").execute(context)
    assert "ExecuteChangeSet" not in writes(calls)
    assert executed["ChangeSetId"] == outputs["ChangeSetId"]


def test_a_change_set_refused_for_having_no_changes_is_no_crash_either(context, calls, op_log):
    operator().execute(context)  # moto refuses a change set without changes, where CloudFormation makes a FAILED one
    outputs = operator(action_mode="CHANGE_SET_REPLACE", change_set_name="noop").execute(context)
    assert outputs["StackStatus"] == "CREATE_COMPLETE" and outputs["ChangeSetId"] == ""
    assert "would contain no changes: there is nothing to execute" in logged(op_log.info)


def test_executing_a_missing_change_set_names_it(context):
    operator().execute(context)
    with pytest.raises(AirflowException, match="Stack webapp has no change set release: create it first"):
        operator(action_mode="CHANGE_SET_EXECUTE", change_set_name="release").execute(context)


def test_a_stack_busy_with_someone_elses_operation_is_not_touched(context, calls):
    stack_id = operator().execute(context)["StackId"]
    moto_stack(stack_id).status = "UPDATE_IN_PROGRESS"  # its latest event carries no token of this task
    with pytest.raises(AirflowException, match="UPDATE_IN_PROGRESS: an operation this action did not start"):
        operator(parameter_overrides={"Value": "two", "Env": "dev"}).execute(context)
    assert writes(calls) == ["CreateStack"]


def test_aws_errors_name_the_call_and_the_stack(aws):
    with pytest.raises(AwsCallError, match="CreateChangeSet on change set 'bad_name' of stack 'webapp' failed: Valid"):
        StackHook().create_change_set_with({"StackName": "webapp", "ChangeSetName": "bad_name", "TemplateBody": "{}"})


def test_template_files_stay_in_the_spec_folder_and_urls_are_template_urls(tmp_path, context):
    with pytest.raises(ValueError, match="template: '../outside.yaml' is outside the spec's folder"):
        operator(template="../outside.yaml", spec_folder=str(tmp_path)).template_source()
    op = operator(template="s3://infra-templates/webapp.yaml")
    assert op.template_source() == {"TemplateURL": "https://infra-templates.s3.us-east-1.amazonaws.com/webapp.yaml"}
    (tmp_path / "big.yaml").write_text("#" * 60_000)
    with pytest.raises(ValueError, match="at most 51200 inline: upload it to S3"):
        operator(template="big.yaml", spec_folder=str(tmp_path)).template_source()


# --- waiting, failing, reattaching, stopping ---------------------------------------------------


def test_in_progress_defers_and_the_trigger_ends_the_task_once_complete(monkeypatch, context, calls, task_xcoms):
    slow(monkeypatch, "create_stack_with", "CREATE_IN_PROGRESS")
    trigger = deferred_on(operator(), context)
    assert isinstance(trigger, CloudFormationStackTrigger)
    record = context["task_state_store"].data["cloudformation_stack"]
    assert record["id"] == trigger.item_id and record["reported"] is False and record["since"]
    trigger.poll_interval = 0.01

    async def scenario():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        # Stubbed status sequence: IN_PROGRESS for two looks, then COMPLETE.
        looked = lambda: sum(1 for o, p in calls if o == "DescribeStacks" and p["StackName"] == trigger.item_id)  # noqa: E731
        start = looked()
        while looked() < start + 2:
            assert not waiting.done()
            await asyncio.sleep(0.01)
        moto_stack(trigger.item_id).status = "CREATE_COMPLETE"
        return await waiting

    event = asyncio.run(scenario())
    assert isinstance(event, TaskSuccessEvent)
    outputs = task_xcoms[(trigger.item_id, "return_value")]
    assert (outputs["StackStatus"], outputs["SettingName"]) == ("CREATE_COMPLETE", "/webapp/setting")


def test_a_failed_create_names_the_first_resource_that_failed_since_the_action_started(
    monkeypatch, context, task_xcoms
):
    slow(monkeypatch, "create_stack_with", "CREATE_IN_PROGRESS")
    trigger = deferred_on(operator(), context)
    stack = moto_stack(trigger.item_id)

    def event(status, reason, logical_id="Setting", at=None):
        e = Event(stack.stack_id, stack.name, logical_id, "p", "AWS::SSM::Parameter", status, reason, None)
        e.timestamp = at or e.timestamp
        stack.events.append(e)

    event("CREATE_FAILED", "an older failure", "Old", datetime.now(timezone.utc) - timedelta(hours=1))
    event("CREATE_FAILED", "Parameter /webapp/setting already exists")
    event("CREATE_FAILED", "Resource creation cancelled", "Other")
    stack.status = "ROLLBACK_COMPLETE"
    trigger.poll_interval = 0.01
    assert isinstance(asyncio.run(anext(trigger.run())), TaskFailedEvent)
    assert task_xcoms[(trigger.item_id, "failure_reason")] == (
        "Stack webapp is ROLLBACK_COMPLETE (CREATE_UPDATE); first failure: Setting (AWS::SSM::Parameter) "
        "CREATE_FAILED: Parameter /webapp/setting already exists"
    )


def test_change_set_creation_is_waited_for_by_its_own_trigger(monkeypatch, context, task_xcoms):
    real = StackHook.create_change_set_with

    def pending(self, params):
        change_set_id, stack_id = real(self, params)
        cloudformation_backends[ACCOUNT][REGION].change_sets[change_set_id].status = "CREATE_IN_PROGRESS"
        return change_set_id, stack_id

    monkeypatch.setattr(StackHook, "create_change_set_with", pending)
    trigger = deferred_on(operator(action_mode="CHANGE_SET_REPLACE", change_set_name="release"), context)
    assert isinstance(trigger, CloudFormationChangeSetTrigger) and ":changeSet/release/" in trigger.item_id
    cloudformation_backends[ACCOUNT][REGION].change_sets[trigger.item_id].status = "CREATE_COMPLETE"
    trigger.poll_interval = 0.01
    assert isinstance(asyncio.run(anext(trigger.run())), TaskSuccessEvent)
    assert task_xcoms[(trigger.item_id, "return_value")]["ChangeSetId"] == trigger.item_id


def test_a_retry_reattaches_to_the_recorded_operation(monkeypatch, context, calls):
    slow(monkeypatch, "update_stack_with", "UPDATE_IN_PROGRESS")
    operator().execute(context)
    first = deferred_on(operator(parameter_overrides={"Value": "two", "Env": "dev"}), context)
    again = deferred_on(
        operator(parameter_overrides={"Value": "two", "Env": "dev"}), context
    )  # a new try of the same task
    assert again.item_id == first.item_id
    assert writes(calls) == ["CreateStack", "UpdateStack"]


def test_a_try_that_lost_its_record_finds_its_operation_by_the_client_request_token(context, calls):
    stack_id = operator().execute(context)["StackId"]
    context["task_state_store"].data.clear()  # crashed between UpdateStack and writing the record
    op = operator(parameter_overrides={"Value": "two", "Env": "dev"})
    stack = moto_stack(stack_id)
    stack.status = "UPDATE_IN_PROGRESS"
    stack.events[-1].client_request_token = op.request_token(context, 0)
    trigger = deferred_on(op, context)
    assert trigger.item_id == stack_id and writes(calls) == ["CreateStack"]
    assert context["task_state_store"].data["cloudformation_stack"]["id"] == stack_id


def test_kill_cancels_an_update_and_says_a_create_cannot_be_cancelled(monkeypatch, context, op_log):
    slow(monkeypatch, "create_stack_with", "CREATE_IN_PROGRESS")
    op = operator()
    deferred_on(op, context)
    with mock.patch.object(StackHook, "cancel_update_stack") as cancel:
        op.on_kill()
        cancel.assert_not_called()
        assert "CloudFormation cannot cancel that operation, it carries on" in logged(op_log.warning)
        moto_stack("webapp").status = "UPDATE_IN_PROGRESS"
        op.on_kill()
        cancel.assert_called_once_with(op.running_work_id())


def test_the_trigger_cancels_the_update_when_the_task_is_marked_failed(aws):
    trigger = CloudFormationStackTrigger(stack_id="arn:aws:cloudformation:us-east-1:1:stack/webapp/x")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CloudFormationStackTrigger, "_task_state", return_value="failed"),
        mock.patch.object(StackHook, "describe_stack", return_value={"StackStatus": "UPDATE_IN_PROGRESS"}),
        mock.patch.object(StackHook, "cancel_update_stack") as cancel,
    ):
        asyncio.run(trigger.on_kill())
    cancel.assert_called_once_with(trigger.item_id)


def test_triggers_serialize_round_trip():
    for trigger in (
        CloudFormationStackTrigger(stack_id="s", aws_conn_id="prod", region_name="eu-west-1", poll_interval=9),
        CloudFormationChangeSetTrigger(
            change_set_id="c", result={"stack_name": "x", "action_mode": "CHANGE_SET_REPLACE"}
        ),
    ):
        classpath, kwargs = trigger.serialize()
        assert type(trigger)(**kwargs).serialize() == (classpath, kwargs)


# --- validation ---------------------------------------------------------------------------------

SPEC = """
pipeline:
  name: infra
  stages:
    - name: Infra
      actions:
        - name: Stack
          type: deploy.cloudformation
          configuration:
{configuration}
"""


def errors(configuration: str) -> list[tuple[str, str]]:
    text = SPEC.format(configuration="\n".join(f"            {line}" for line in configuration.strip().splitlines()))
    _, found = parse_spec_text(text)
    assert all((e.stage, e.action) == ("Infra", "Stack") for e in found)
    return [(e.field, e.message) for e in found]


def test_a_valid_configuration_has_no_errors():
    assert (
        errors("""
action_mode: CHANGE_SET_REPLACE
stack_name: webapp-production
change_set_name: release
template: s3://templates/webapp.yaml
parameter_overrides: {ImageUri: "#{Build.IMAGE_URI}", Replicas: 2}
capabilities: [CAPABILITY_IAM, CAPABILITY_AUTO_EXPAND]
role_arn: arn:aws:iam::123456789012:role/cfn-deploy
""")
        == [("configuration.parameter_overrides.ImageUri", mock.ANY)]  # only the reference: no action sets Build
    )


@pytest.mark.parametrize(
    "configuration, field, message",
    [
        (
            "action_mode: CHANGE_SET_EXECUTE\nstack_name: webapp",
            "configuration.change_set_name",
            "missing required key",
        ),
        ("action_mode: CREATE_UPDATE\nstack_name: webapp", "configuration.template", "missing required key"),
        (
            "action_mode: CREATE_UPDATE\nstack_name: 1webapp\ntemplate: t.yaml",
            "configuration.stack_name",
            "not a valid stack name",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: web_app\ntemplate: t.yaml",
            "configuration.stack_name",
            "not a valid stack name",
        ),
        ("action_mode: UPSERT\nstack_name: webapp", "configuration.action_mode", "CREATE_UPDATE"),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: t.yaml\ncapabilities: [CAPABILITY_ROOT]",
            "configuration.capabilities[0]",
            "must be one of CAPABILITY_IAM, CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: t.yaml\nparameter_overrides: {Subnets: [a, b]}",
            "configuration.parameter_overrides.Subnets",
            "expected a string",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: t.yaml\nparameter_overrides: x",
            "configuration.parameter_overrides",
            "mapping",
        ),
        (
            "action_mode: DELETE_ONLY\nstack_name: webapp\ntemplate: t.yaml",
            "configuration.template",
            "not used by action_mode DELETE_ONLY",
        ),
        (
            "action_mode: DELETE_ONLY\nstack_name: webapp\nchange_set_name: c",
            "configuration.change_set_name",
            "only used by the change set modes",
        ),
        (
            "action_mode: DELETE_ONLY\nstack_name: webapp\nrole_arn: cfn-deploy",
            "configuration.role_arn",
            "not an IAM role ARN",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: ../t.yaml",
            "configuration.template",
            "outside the spec's folder",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: http://example.com/t.yaml",
            "configuration.template",
            "a URL here starts with s3:// or https://",
        ),
        (
            "action_mode: CREATE_UPDATE\nstack_name: webapp\ntemplate: t.yaml\n"
            "template_configuration: https://example.com/c.json",
            "configuration.template_configuration",
            "a URL here starts with s3://",
        ),
    ],
)
def test_bad_configurations_name_the_field(configuration, field, message):
    found = errors(configuration)
    assert any(f == field and message in m for f, m in found), found
