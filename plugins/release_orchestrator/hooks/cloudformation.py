"""CloudFormation: the amazon provider's hook, plus the calls the provider does not wrap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook
from botocore.exceptions import ClientError

from release_orchestrator.hooks.base import aws_call

# Where a stack's operation ended. ROLLBACK_COMPLETE (a create that failed) and UPDATE_ROLLBACK_COMPLETE
# (an update that failed) end in *_COMPLETE, but are failures.
STACK_SUCCEEDED_STATES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"})
STACK_FAILED_STATES = frozenset(
    {
        "CREATE_FAILED",
        "DELETE_FAILED",
        "UPDATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
        "IMPORT_ROLLBACK_COMPLETE",
        "IMPORT_ROLLBACK_FAILED",
    }
)
STACK_TERMINAL_STATES = STACK_SUCCEEDED_STATES | STACK_FAILED_STATES
# A stack in one of these cannot be updated; REPLACE_ON_FAILURE deletes it and creates it again.
STACK_BROKEN_STATES = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"})
# Made by CreateChangeSet for a stack that did not exist; it has no resources until the change set runs.
STACK_REVIEW = "REVIEW_IN_PROGRESS"

CHANGE_SET_READY = "CREATE_COMPLETE"
CHANGE_SET_FAILED = "FAILED"
CHANGE_SET_TERMINAL_STATES = frozenset({CHANGE_SET_READY, CHANGE_SET_FAILED, "DELETE_COMPLETE", "DELETE_FAILED"})
# What CloudFormation answers when there is nothing to change (UpdateStack's error; a change set's StatusReason).
NO_UPDATES = "No updates are to be performed"
NO_CHANGES = "didn't contain changes"


def no_changes(message: str | None) -> bool:
    return bool(message) and (NO_UPDATES in message or NO_CHANGES in message)


def _missing(err: ClientError) -> bool:
    """A ValidationError saying the stack or change set does not exist (CloudFormation has no NotFound code)."""
    error = err.response.get("Error", {})
    message = error.get("Message", "")
    return error.get("Code") in ("ValidationError", "ChangeSetNotFound") and (
        "does not exist" in message or error.get("Code") == "ChangeSetNotFound"
    )


class StackHook(CloudFormationHook):
    """Interact with CloudFormation stacks and change sets through boto3's ``cloudformation`` client."""

    def _call(self, operation: str, resource: str, call: Callable[[], Any]) -> Any:
        with aws_call(operation, resource):
            return call()

    def _optional(self, operation: str, resource: str, call: Callable[[], Any]) -> Any:
        """The call's answer, or None when what it names does not exist."""
        try:
            return call()
        except ClientError as err:
            if _missing(err):
                return None
            with aws_call(operation, resource):
                raise

    def describe_stack(self, stack: str) -> dict[str, Any] | None:
        """The stack (by name, or by id, which also finds a deleted one), None when there is none."""
        stacks = self._optional(
            "DescribeStacks", f"stack '{stack}'", lambda: self.conn.describe_stacks(StackName=stack)["Stacks"]
        )
        return stacks[0] if stacks else None

    def describe_stacks(self, stack_ids: list[str]) -> list[dict[str, Any]]:
        """The stacks that exist among ``stack_ids`` (DescribeStacks names one stack per call)."""
        return [stack for stack_id in stack_ids if (stack := self.describe_stack(stack_id))]

    def create_stack_with(self, params: dict[str, Any]) -> str:
        name = params["StackName"]
        return self._call("CreateStack", f"stack '{name}'", lambda: self.conn.create_stack(**params)["StackId"])

    def update_stack_with(self, params: dict[str, Any]) -> str | None:
        """The stack id, or None when CloudFormation says there is nothing to update."""
        name = params["StackName"]
        try:
            return self.conn.update_stack(**params)["StackId"]
        except ClientError as err:
            if no_changes(err.response.get("Error", {}).get("Message")):
                return None
            with aws_call("UpdateStack", f"stack '{name}'"):
                raise

    def delete_stack_by_id(self, stack_id: str, token: str | None = None, role_arn: str | None = None) -> None:
        params: dict[str, Any] = {"StackName": stack_id}
        if token:
            params["ClientRequestToken"] = token
        if role_arn:
            params["RoleARN"] = role_arn
        self._call("DeleteStack", f"stack '{stack_id}'", lambda: self.conn.delete_stack(**params))

    def cancel_update_stack(self, stack: str) -> None:
        self._call("CancelUpdateStack", f"stack '{stack}'", lambda: self.conn.cancel_update_stack(StackName=stack))

    def describe_change_set(self, change_set: str, stack: str | None = None) -> dict[str, Any] | None:
        """The change set (by ARN, or by name with its stack), None when there is none."""
        params = {"ChangeSetName": change_set, **({"StackName": stack} if stack else {})}
        return self._optional(
            "DescribeChangeSet",
            f"change set '{change_set}'" + (f" of stack '{stack}'" if stack else ""),
            lambda: self.conn.describe_change_set(**params),
        )

    def describe_change_sets(self, change_set_ids: list[str]) -> list[dict[str, Any]]:
        return [change_set for arn in change_set_ids if (change_set := self.describe_change_set(arn))]

    def create_change_set_with(self, params: dict[str, Any]) -> tuple[str, str] | None:
        """(change set id, stack id); None when the answer is that nothing would change (CloudFormation
        itself makes a FAILED change set saying so; some implementations refuse the call instead)."""
        try:
            answer = self.conn.create_change_set(**params)
        except ClientError as err:
            if no_changes(err.response.get("Error", {}).get("Message")):
                return None
            with aws_call(
                "CreateChangeSet", f"change set '{params['ChangeSetName']}' of stack '{params['StackName']}'"
            ):
                raise
        return answer["Id"], answer["StackId"]

    def delete_change_set(self, change_set: str, stack: str) -> None:
        self._call(
            "DeleteChangeSet",
            f"change set '{change_set}' of stack '{stack}'",
            lambda: self.conn.delete_change_set(ChangeSetName=change_set, StackName=stack),
        )

    def execute_change_set(self, change_set_id: str, token: str | None = None) -> None:
        params: dict[str, Any] = {"ChangeSetName": change_set_id}
        if token:
            params["ClientRequestToken"] = token
        self._call("ExecuteChangeSet", f"change set '{change_set_id}'", lambda: self.conn.execute_change_set(**params))

    def stack_events(self, stack_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The stack's events since ``since``, oldest first (DescribeStackEvents answers newest first)."""
        events: list[dict[str, Any]] = []
        with aws_call("DescribeStackEvents", f"stack '{stack_id}'"):
            for page in self.conn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
                for event in page.get("StackEvents", []):
                    if since is not None and event["Timestamp"] < since:
                        return events[::-1]
                    events.append(event)
        return events[::-1]

    def latest_event(self, stack_id: str) -> dict[str, Any] | None:
        """The stack's newest event (its ClientRequestToken names the operation that made it)."""
        events = self._call(
            "DescribeStackEvents",
            f"stack '{stack_id}'",
            lambda: self.conn.describe_stack_events(StackName=stack_id).get("StackEvents", []),
        )
        return events[0] if events else None
