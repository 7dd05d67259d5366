"""CloudFormation action ``deploy.cloudformation``: CodePipeline's five action modes on one stack.

The call that starts the stack operation (or the change set) is made here; the wait until the stack
reaches a final status is deferred to the triggerer's shared poller. See docs/operators.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.base import aws_call
from release_orchestrator.hooks.cloudformation import (
    CHANGE_SET_FAILED,
    CHANGE_SET_READY,
    CHANGE_SET_TERMINAL_STATES,
    STACK_BROKEN_STATES,
    STACK_REVIEW,
    STACK_TERMINAL_STATES,
    StackHook,
    no_changes,
)
from release_orchestrator.links import CloudFormationStackLink
from release_orchestrator.operators.codedeploy import as_json
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    stable_token,
    trigger_kwargs,
)
from release_orchestrator.pipeline.action_types import (
    CLOUDFORMATION_ACTION_MODES as ACTION_MODES,
)
from release_orchestrator.pipeline.action_types import (
    CLOUDFORMATION_CAPABILITIES as CAPABILITIES,
)
from release_orchestrator.pipeline.files import artifact_file, is_file_path
from release_orchestrator.results.cloudformation import StackResult, is_change_set, stop_stack_operation
from release_orchestrator.triggers.cloudformation import CloudFormationChangeSetTrigger, CloudFormationStackTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

TEMPLATE_BODY_MAX = 51_200  # bytes CreateStack takes inline; larger templates go through S3 (TemplateURL)
# Events a little older than the start still belong to it: AWS's clock and ours differ slightly.
CLOCK_MARGIN = timedelta(seconds=5)


def s3_https_url(uri: str, region: str | None) -> str:
    """CloudFormation takes a template in S3 as an https URL, not s3://bucket/key."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return f"https://{bucket}.s3.{region or 'us-east-1'}.amazonaws.com/{key}"


def in_progress(status: str | None) -> bool:
    return bool(status) and status.endswith("_IN_PROGRESS") and status != STACK_REVIEW


class CloudFormationOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[StackHook]):
    """Create, update, delete or change a CloudFormation stack (action type ``deploy.cloudformation``).

    :param action_mode: CREATE_UPDATE, DELETE_ONLY, REPLACE_ON_FAILURE, CHANGE_SET_REPLACE or CHANGE_SET_EXECUTE.
    :param stack_name: the stack.
    :param change_set_name: the change set (change set modes).
    :param template: the template: a path to a file (YAML or JSON), an ``s3://`` or ``https://`` URL, or a mapping.
    :param template_configuration: CodePipeline's template configuration (Parameters, Tags, StackPolicy): a
        path to a JSON file, an ``s3://`` URL, or a mapping.
    :param parameter_overrides: template parameters, winning over the template configuration's.
    :param capabilities: CAPABILITY_IAM, CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND (a list, or comma-separated).
    :param role_arn: the service role CloudFormation acts as on the stack.
    :param spec_folder: the folder of the spec the action comes from: files are read only inside it.
        None (an operator in a DAG file) reads any path.
    :param poll_interval: seconds between two looks at the stack.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    aws_hook_class = StackHook
    template_fields: Sequence[str] = aws_template_fields(
        "action_mode",
        "stack_name",
        "change_set_name",
        "template",
        "template_configuration",
        "parameter_overrides",
        "capabilities",
        "role_arn",
    )
    template_fields_renderers = {"parameter_overrides": "json", "template_configuration": "json"}
    ui_color = "#f6e0c8"
    operator_extra_links = (CloudFormationStackLink(),)

    record_key = "cloudformation_stack"

    def __init__(
        self,
        *,
        action_mode: str,
        stack_name: str,
        change_set_name: str | None = None,
        template: str | dict[str, Any] | None = None,
        template_configuration: str | dict[str, Any] | None = None,
        parameter_overrides: dict[str, Any] | str | None = None,
        capabilities: list[str] | str | None = None,
        role_arn: str | None = None,
        spec_folder: str | None = None,
        poll_interval: float = 15,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.action_mode = action_mode
        self.stack_name = stack_name
        self.change_set_name = change_set_name
        self.template = template
        self.template_configuration = template_configuration
        self.parameter_overrides = parameter_overrides
        self.capabilities = capabilities
        self.role_arn = role_arn
        self.spec_folder = spec_folder
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._work_id: str | None = None

    @property
    def _mode(self) -> str:
        mode = str(self.action_mode or "").upper()
        if mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {', '.join(ACTION_MODES)}, not {self.action_mode!r}")
        if mode.startswith("CHANGE_SET") and not self.change_set_name:
            raise ValueError(f"action_mode {mode} needs change_set_name")
        return mode

    def request_token(self, context: Context, generation: int) -> str:
        """ClientRequestToken of this task instance's operation: the same for every try of one start."""
        return "airflow-" + stable_token(context, "cloudformation", generation)[:48]

    # --- execution ---

    def result(self, since: str | None, change_set_id: str | None = None) -> StackResult:
        """How the finished operation becomes this action's outputs or failure (also run by the trigger)."""
        return StackResult(
            stack_name=self.stack_name,
            action_mode=self._mode,
            since=since,
            change_set_id=change_set_id,
            **connection_kwargs(self),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        mode = self._mode  # checked before anything starts
        record = StartRecord(context, self.record_key, self.log)
        generation = record.next_generation
        token = self.request_token(context, generation)
        if item := self._reattach(record, generation, token):
            entry = record.entry
            return self._wait(context, item, entry.get("since"), entry.get("change_set_id"))
        since = (datetime.now(timezone.utc) - CLOCK_MARGIN).isoformat()
        self.load_artifact_files(context, ("template", "template_configuration"))
        start = {
            "CREATE_UPDATE": self._create_or_update,
            "REPLACE_ON_FAILURE": self._create_or_update,
            "DELETE_ONLY": self._delete,
            "CHANGE_SET_REPLACE": self._replace_change_set,
            "CHANGE_SET_EXECUTE": self._execute_change_set,
        }[mode]
        return start(context, record, generation, token, since)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumption by a trigger that did not end the task itself."""
        if not event:
            raise AirflowException("Trigger error: event is None")
        item_id = event.get("stack_id") or event.get("change_set_id")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for {item_id} failed"))
        entry = StartRecord(context, self.record_key, self.log).entry
        return self.finish(context, self._describe(item_id), entry.get("since"), entry.get("change_set_id"))

    def _lookup(self, item_id: str) -> dict[str, Any] | None:
        """The stack or change set ``item_id`` names, None when it is gone."""
        return self.hook.describe_change_set(item_id) if is_change_set(item_id) else self.hook.describe_stack(item_id)

    def _describe(self, item_id: str) -> dict[str, Any]:
        if (item := self._lookup(item_id)) is None:
            raise AirflowException(f"{item_id} no longer exists")
        return item

    def _reattach(self, record: StartRecord, generation: int, token: str) -> dict[str, Any] | None:
        """What an earlier try of this task started and is still running, if any."""
        if item_id := record.pending_id:
            item = self._lookup(item_id) or {}
            status = item.get("StackStatus") or item.get("Status")
            if in_progress(status) or status == "CREATE_PENDING":
                self.log.info("Reattaching to %s (%s), started by an earlier try of this task", item_id, status)
                return item
            self.log.info("Recorded %s has finished (%s): starting anew", item_id, status or "gone")
        # A try that crashed between its call and its record: the stack's latest event carries its token.
        stack = self.hook.describe_stack(self.stack_name)
        if stack and in_progress(stack["StackStatus"]):
            latest = self.hook.latest_event(stack["StackId"])
            if latest and latest.get("ClientRequestToken") == token:
                self.log.info(
                    "Reattaching to stack %s (%s), started by this task", self.stack_name, stack["StackStatus"]
                )
                # The operation started when the stack was last created, updated or deleted.
                started = max(stack[k] for k in ("CreationTime", "LastUpdatedTime", "DeletionTime") if k in stack)
                record.started(stack["StackId"], generation, since=(started - CLOCK_MARGIN).isoformat())
                return stack
        return None

    def _refuse_busy(self, stack: dict[str, Any]) -> None:
        if in_progress(stack["StackStatus"]):
            raise AirflowException(
                f"Stack {self.stack_name} is {stack['StackStatus']}: an operation this action did not start is "
                "running on it; retry once it has finished"
            )

    def _create_or_update(self, context: Context, record: StartRecord, generation: int, token: str, since: str):
        stack = self.hook.describe_stack(self.stack_name)
        status = stack["StackStatus"] if stack else None
        if status in STACK_BROKEN_STATES:
            if self._mode == "CREATE_UPDATE":
                raise AirflowException(
                    f"Stack {self.stack_name} is {status} and cannot be updated: delete it, or use action_mode "
                    "REPLACE_ON_FAILURE, which deletes it and creates it again"
                )
            self._delete_failed_stack(stack, token)
            stack = None
        elif status == STACK_REVIEW:
            raise AirflowException(
                f"Stack {self.stack_name} is {STACK_REVIEW}: it was made by a change set that never ran; "
                "execute or delete that change set first"
            )
        if stack is None:
            self.log.info("Creating stack %s", self.stack_name)
            stack_id = self.hook.create_stack_with({**self.stack_params(with_policy=True), "ClientRequestToken": token})
        else:
            self._refuse_busy(stack)
            self.log.info("Updating stack %s (%s)", self.stack_name, status)
            stack_id = self.hook.update_stack_with({**self.stack_params(with_policy=True), "ClientRequestToken": token})
            if stack_id is None:
                self.log.info("No updates are to be performed on stack %s: it already matches", self.stack_name)
                return self.finish(context, stack, since)
        record.started(stack_id, generation, since=since)
        return self._wait(context, self.hook.describe_stack(stack_id) or {"StackId": stack_id}, since)

    def _delete_failed_stack(self, stack: dict[str, Any], token: str) -> None:
        """REPLACE_ON_FAILURE: delete the failed stack, waiting here (deleting one whose resources were
        rolled back is short), before creating it again."""
        stack_id, status = stack["StackId"], stack["StackStatus"]
        self.log.info("Stack %s is %s: deleting it to create it again (REPLACE_ON_FAILURE)", self.stack_name, status)
        self.hook.delete_stack_by_id(stack_id, token=f"{token}-replace", role_arn=self.role_arn)
        while (status := (self.hook.describe_stack(stack_id) or {}).get("StackStatus")) not in STACK_TERMINAL_STATES:
            if status is None:
                return
            time.sleep(float(self.poll_interval))
        if status != "DELETE_COMPLETE":
            raise AirflowException(f"Stack {self.stack_name} could not be deleted to be replaced: it is {status}")

    def _delete(self, context: Context, record: StartRecord, generation: int, token: str, since: str):
        stack = self.hook.describe_stack(self.stack_name)
        if stack is None:
            self.log.info("Stack %s does not exist: nothing to delete", self.stack_name)
            StartRecord(context, self.record_key, self.log).reported()
            return self.result(since).outputs({"StackName": self.stack_name})
        if stack["StackStatus"] != "DELETE_IN_PROGRESS":
            self._refuse_busy(stack)
            self.log.info("Deleting stack %s (%s)", self.stack_name, stack["StackStatus"])
            self.hook.delete_stack_by_id(stack["StackId"], token=token, role_arn=self.role_arn)
        record.started(stack["StackId"], generation, since=since)
        return self._wait(context, self.hook.describe_stack(stack["StackId"]) or stack, since)

    def _replace_change_set(self, context: Context, record: StartRecord, generation: int, token: str, since: str):
        stack = self.hook.describe_stack(self.stack_name)
        status = stack["StackStatus"] if stack else None
        if status in STACK_BROKEN_STATES:
            raise AirflowException(
                f"Stack {self.stack_name} is {status}: a change set cannot update it; delete the stack first"
            )
        if stack is not None and status != STACK_REVIEW:
            self._refuse_busy(stack)
        if stack is not None and self.hook.describe_change_set(self.change_set_name, self.stack_name):
            self.log.info("Deleting the existing change set %s of stack %s", self.change_set_name, self.stack_name)
            self.hook.delete_change_set(self.change_set_name, self.stack_name)
        kind = "UPDATE" if stack is not None and status != STACK_REVIEW else "CREATE"
        params = {
            **self.stack_params(with_policy=False),
            "ChangeSetName": self.change_set_name,
            "ChangeSetType": kind,
            "ClientToken": token,
        }
        self.log.info("Creating change set %s (%s) of stack %s", self.change_set_name, kind, self.stack_name)
        created = self.hook.create_change_set_with(params)
        if created is None:
            self.log.info(
                "Change set %s of stack %s would contain no changes: there is nothing to execute",
                self.change_set_name,
                self.stack_name,
            )
            return self.finish(context, stack, since)
        change_set_id, _ = created
        record.started(change_set_id, generation, since=since, change_set_id=change_set_id)
        change_set = self.hook.describe_change_set(change_set_id) or {"ChangeSetId": change_set_id}
        return self._wait(context, change_set, since, change_set_id)

    def _execute_change_set(self, context: Context, record: StartRecord, generation: int, token: str, since: str):
        change_set = self.hook.describe_change_set(self.change_set_name, self.stack_name)
        if change_set is None:
            raise AirflowException(
                f"Stack {self.stack_name} has no change set {self.change_set_name}: create it first "
                "(action_mode CHANGE_SET_REPLACE)"
            )
        change_set_id, reason = change_set["ChangeSetId"], change_set.get("StatusReason") or ""
        if change_set["Status"] == CHANGE_SET_FAILED and no_changes(reason):
            return self.finish(context, change_set, since, change_set_id)  # says so; nothing to execute
        if change_set["Status"] != CHANGE_SET_READY or change_set.get("ExecutionStatus") != "AVAILABLE":
            raise AirflowException(
                f"Change set {self.change_set_name} of stack {self.stack_name} cannot be executed: it is "
                f"{change_set['Status']}, execution status {change_set.get('ExecutionStatus')}"
                + (f": {reason}" if reason else "")
            )
        stack = self.hook.describe_stack(change_set["StackId"])
        if stack is not None:
            self._refuse_busy(stack)
        self.log.info("Executing change set %s of stack %s", self.change_set_name, self.stack_name)
        self.hook.execute_change_set(change_set_id, token)
        record.started(change_set["StackId"], generation, since=since, change_set_id=change_set_id)
        stack = self.hook.describe_stack(change_set["StackId"]) or {"StackId": change_set["StackId"]}
        return self._wait(context, stack, since, change_set_id)

    # --- waiting ---

    def _wait(
        self, context: Context, item: dict[str, Any], since: str | None, change_set_id: str | None = None
    ) -> dict[str, Any]:
        change_set = "StackStatus" not in item and "ChangeSetId" in item
        item_id = item["ChangeSetId"] if change_set else item["StackId"]
        self._work_id = item_id
        self._persist_link(context, item.get("StackId"))
        status = item.get("Status") if change_set else item.get("StackStatus")
        if status in (CHANGE_SET_TERMINAL_STATES if change_set else STACK_TERMINAL_STATES):
            return self.finish(context, item, since, change_set_id)
        if not self.deferrable:
            return self._wait_here(context, item_id, since, change_set_id)
        trigger_class = CloudFormationChangeSetTrigger if change_set else CloudFormationStackTrigger
        waits_on = {"change_set_id" if change_set else "stack_id": item_id}
        self.defer(
            trigger=trigger_class(**waits_on, **trigger_kwargs(self, context, self.result(since, change_set_id))),
            method_name="execute_complete",
            timeout=defer_timeout(self, context),
        )

    def _wait_here(self, context: Context, item_id: str, since: str | None, change_set_id: str | None):
        """Wait in this worker (``deferrable=False``)."""
        terminal = CHANGE_SET_TERMINAL_STATES if is_change_set(item_id) else STACK_TERMINAL_STATES
        self.log.info("Waiting for %s", item_id)
        while True:
            item = self._describe(item_id)
            if (item.get("StackStatus") or item.get("Status")) in terminal:
                return self.finish(context, item, since, change_set_id)
            time.sleep(float(self.poll_interval))

    def _persist_link(self, context: Context, stack_id: str | None) -> None:
        if stack_id:
            CloudFormationStackLink.persist(
                context=context,
                operator=self,
                region_name=self.hook.conn_region_name,
                aws_partition=self.hook.conn_partition,
                stack_id=stack_id,
            )

    def finish(
        self, context: Context, item: dict[str, Any], since: str | None, change_set_id: str | None = None
    ) -> dict[str, Any]:
        """Report a finished operation here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        return self.result(since, change_set_id).conclude(item, self.log)

    # --- the request ---

    def stack_params(self, with_policy: bool) -> dict[str, Any]:
        """What CreateStack, UpdateStack and CreateChangeSet share: template, parameters, tags, role."""
        params: dict[str, Any] = {"StackName": self.stack_name, **self.template_source()}
        configuration = self.configuration_document()
        parameters = {**(configuration.get("Parameters") or {}), **(as_json(self.parameter_overrides) or {})}
        if parameters:
            params["Parameters"] = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
        if capabilities := self.capability_list():
            params["Capabilities"] = capabilities
        if tags := configuration.get("Tags"):
            params["Tags"] = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
        if self.role_arn:
            params["RoleARN"] = self.role_arn
        if with_policy and configuration.get("StackPolicy"):
            policy = configuration["StackPolicy"]
            params["StackPolicyBody"] = policy if isinstance(policy, str) else json.dumps(policy)
        return params

    def capability_list(self) -> list[str]:
        value = self.capabilities
        items = value.split(",") if isinstance(value, str) else list(value or [])
        capabilities = [str(c).strip() for c in items if str(c).strip()]
        unknown = [c for c in capabilities if c not in CAPABILITIES]
        if unknown:
            raise ValueError(f"capabilities: {', '.join(unknown)} not among {', '.join(CAPABILITIES)}")
        return capabilities

    def template_source(self) -> dict[str, str]:
        template = as_json(self.template)
        if not template:
            raise ValueError(f"action_mode {self._mode} needs a template")
        if isinstance(template, Mapping):
            return {"TemplateBody": json.dumps(template)}
        template = str(template).strip()
        if template.startswith("s3://"):
            return {"TemplateURL": s3_https_url(template, self.hook.conn_region_name)}
        if template.startswith("https://"):
            return {"TemplateURL": template}
        body = self.file_text(template, "template", self.spec_folder)
        if len(body.encode()) > TEMPLATE_BODY_MAX:
            raise ValueError(
                f"template {template} is {len(body.encode())} bytes; CloudFormation takes at most "
                f"{TEMPLATE_BODY_MAX} inline: upload it to S3 and give its s3:// URL"
            )
        return {"TemplateBody": body}

    def configuration_document(self) -> dict[str, Any]:
        """CodePipeline's template configuration: {"Parameters": {}, "Tags": {}, "StackPolicy": {}}."""
        value = as_json(self.template_configuration)
        if not value:
            return {}
        if isinstance(value, str) and value.startswith("s3://"):
            bucket, _, key = value[len("s3://") :].partition("/")
            s3 = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify)
            with aws_call("GetObject", f"template configuration '{value}'"):
                text = s3.read_key(key, bucket)
            value = self._parse_configuration(text, value)
        elif is_file_path(value) or artifact_file(value):
            value = self._parse_configuration(self.file_text(value, "template_configuration", self.spec_folder), value)
        if not isinstance(value, Mapping):
            raise ValueError("template_configuration must hold a JSON object (Parameters, Tags, StackPolicy)")
        unknown = sorted(set(value) - {"Parameters", "Tags", "StackPolicy"})
        if unknown:
            raise ValueError(
                f"template_configuration: unknown key(s) {', '.join(unknown)}; allowed: Parameters, Tags, StackPolicy"
            )
        return dict(value)

    @staticmethod
    def _parse_configuration(text: str, where: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as err:
            raise ValueError(f"template_configuration {where} is not valid JSON: {err}") from None

    # --- stopping ---

    def running_work_id(self) -> str | None:
        return self._work_id

    def stop_work(self, work_id: str) -> None:
        try:
            stop_stack_operation(self.hook, work_id, self.log)
        except Exception as err:
            self.log.warning("Could not stop the operation on %s: %s", work_id, err)
