"""What a finished stack operation or change set means for ``deploy.cloudformation``.

`StackResult` is plain data (it travels in the trigger's kwargs). It turns a stack that reached a final
status into the action's outputs (the stack's outputs plus StackName, StackId, StackStatus, ChangeSetId,
ConsoleUrl) or an `ActionFailed` naming the first resource that failed, from the stack's events since the
action started; and a change set that finished creating into outputs, or the reason it failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from release_orchestrator.hooks.cloudformation import (
    CHANGE_SET_READY,
    STACK_SUCCEEDED_STATES,
    StackHook,
    no_changes,
)
from release_orchestrator.links import CloudFormationStackLink
from release_orchestrator.results import ActionFailed, AwsResult


def is_change_set(item_id: str) -> bool:
    """Whether an id names a change set (arn:...:changeSet/...) rather than a stack (arn:...:stack/...)."""
    return ":changeSet/" in item_id


def stop_stack_operation(hook: StackHook, stack_id: str, log: Any) -> None:
    """Stop what the action started on the stack, where CloudFormation can: an update is cancelled (the stack
    rolls back); a create, a delete or a change set being created cannot be, and carries on."""
    if is_change_set(stack_id):
        log.info("Change set %s is being created; that cannot be stopped, it finishes on its own", stack_id)
        return
    stack = hook.describe_stack(stack_id)
    status = (stack or {}).get("StackStatus")
    if status == "UPDATE_IN_PROGRESS":
        log.info("Cancelling the update of stack %s (CancelUpdateStack): it rolls back", stack_id)
        hook.cancel_update_stack(stack_id)
    elif status and status.endswith("_IN_PROGRESS"):
        log.warning(
            "Stack %s is %s: CloudFormation cannot cancel that operation, it carries on "
            "(delete the stack once it has finished to undo it)",
            stack_id,
            status,
        )
    else:
        log.info("Stack %s is %s: nothing to stop", stack_id, status or "gone")


@dataclass
class StackResult(AwsResult):
    """Outputs or failure of ``action_mode`` on ``stack_name``; ``since`` (ISO time) is when the action
    started, so only the events of this operation explain a failure."""

    stack_name: str
    action_mode: str
    since: str | None = None
    change_set_id: str | None = None

    @cached_property
    def hook(self) -> StackHook:
        return self.shared_hook(StackHook)

    def conclude(self, item: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed when the operation did not succeed."""
        if "StackStatus" not in item:
            return self.conclude_change_set(item, log)
        status = item["StackStatus"]
        if status not in STACK_SUCCEEDED_STATES:
            raise ActionFailed(self.failure_message(item, log))
        log.info("Stack %s is %s", item.get("StackName", self.stack_name), status)
        return self.outputs(item)

    def conclude_change_set(self, change_set: dict[str, Any], log: Any) -> dict[str, Any]:
        status, reason = change_set.get("Status"), change_set.get("StatusReason") or ""
        name = f"Change set {change_set.get('ChangeSetName')} of stack {self.stack_name}"
        if status != CHANGE_SET_READY and not no_changes(reason):
            raise ActionFailed(f"{name} is {status}: {reason}".rstrip(": "))
        if status == CHANGE_SET_READY:
            changes = change_set.get("Changes") or []
            log.info("%s is ready to execute: %d change(s)", name, len(changes))
        else:
            log.info("%s contains no changes: there is nothing to execute (%s)", name, reason)
        stack = self.hook.describe_stack(change_set["StackId"]) or {
            "StackId": change_set["StackId"],
            "StackName": self.stack_name,
        }
        return self.outputs(stack, change_set["ChangeSetId"])

    def outputs(self, stack: dict[str, Any], change_set_id: str | None = None) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        if stack.get("StackStatus") != "DELETE_COMPLETE":  # a deleted stack's outputs are gone with it
            outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}
        stack_id = stack.get("StackId", "")
        outputs.update(
            StackName=stack.get("StackName", self.stack_name),
            StackId=stack_id,
            StackStatus=stack.get("StackStatus", ""),
            ChangeSetId=change_set_id or self.change_set_id or "",
            ConsoleUrl=self.console_url(stack_id),
        )
        return outputs

    def console_url(self, stack_id: str) -> str:
        return CloudFormationStackLink().format_link(
            region_name=self.hook.conn_region_name,
            aws_domain=CloudFormationStackLink.get_aws_domain(self.hook.conn_partition),
            stack_id=stack_id,
        )

    def failure_message(self, stack: dict[str, Any], log: Any) -> str:
        parts = [f"Stack {stack.get('StackName', self.stack_name)} is {stack['StackStatus']} ({self.action_mode})"]
        if failed := self.first_failure(stack["StackId"], log):
            parts.append(f"first failure: {failed}")
        elif stack.get("StackStatusReason"):
            parts.append(stack["StackStatusReason"])
        return "; ".join(parts)

    def first_failure(self, stack_id: str, log: Any) -> str | None:
        """The first resource that failed since the action started (DescribeStackEvents), as text."""
        since = datetime.fromisoformat(self.since) if self.since else None
        try:
            events = self.hook.stack_events(stack_id, since)
        except Exception as err:
            log.info("The stack's events cannot be read: %s", err)
            return None
        for event in events:
            if str(event.get("ResourceStatus", "")).endswith("_FAILED"):
                what = f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}) {event['ResourceStatus']}"
                reason = event.get("ResourceStatusReason")
                return f"{what}: {reason}" if reason else what
        return None
