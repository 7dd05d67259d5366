"""Deferred waits for a CloudFormation stack operation and for a change set being created.

CloudFormation has no batch read: DescribeStacks and DescribeChangeSet name one stack or change set per
call, so the shared poller asks one id per call (``max_batch`` 1); it still keeps one loop, one client
and one interval for every waiting stack of a connection.
"""

from __future__ import annotations

from typing import Any

from release_orchestrator.hooks.cloudformation import (
    CHANGE_SET_READY,
    CHANGE_SET_TERMINAL_STATES,
    STACK_SUCCEEDED_STATES,
    STACK_TERMINAL_STATES,
    StackHook,
)
from release_orchestrator.results.cloudformation import StackResult, stop_stack_operation
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

CLOUDFORMATION_STACKS = BatchSpec(
    service="cloudformation",
    batch_call="DescribeStacks",
    id_key="StackId",
    status_key="StackStatus",
    max_batch=1,
    terminal_states=STACK_TERMINAL_STATES,
)
CLOUDFORMATION_CHANGE_SETS = BatchSpec(
    service="cloudformation-changeset",
    batch_call="DescribeChangeSet",
    id_key="ChangeSetId",
    status_key="Status",
    max_batch=1,
    terminal_states=CHANGE_SET_TERMINAL_STATES,
)


class CloudFormationStackTrigger(BatchPolledTrigger):
    """Ends the task once the stack's operation has finished: with the stack's outputs, or failed naming
    the first resource that failed.

    :param stack_id: the stack (its id, so that a deleted stack is still found).
    Other keyword arguments as `BatchPolledTrigger`'s (``result``: the action's ``StackResult`` as a dict).
    """

    spec = CLOUDFORMATION_STACKS
    hook_class = StackHook
    id_field = "stack_id"
    result_class = StackResult
    succeeded_states = STACK_SUCCEEDED_STATES

    @staticmethod
    def batch_get(hook: StackHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.describe_stacks(ids)

    def __init__(self, stack_id: str, **kwargs: Any) -> None:
        super().__init__(item_id=stack_id, **kwargs)

    def outcome(self, status: str | None) -> str:
        return "success" if status in self.succeeded_states else "failed"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        keep = ("StackId", "StackName", "StackStatus", "StackStatusReason", "ChangeSetId", "Status", "StatusReason")
        return {key: item[key] for key in keep if key in item}

    def stop(self) -> None:
        stop_stack_operation(self.hook(), self.item_id, self.log)


class CloudFormationChangeSetTrigger(CloudFormationStackTrigger):
    """Ends the task once the change set has been created (or failed to be, or has no changes).

    :param change_set_id: the change set's ARN; the other parameters as for the stack trigger.
    """

    spec = CLOUDFORMATION_CHANGE_SETS
    id_field = "change_set_id"
    succeeded_states = frozenset({CHANGE_SET_READY})

    def __init__(self, change_set_id: str, **kwargs: Any) -> None:
        super().__init__(stack_id=change_set_id, **kwargs)  # the poller's item is the change set

    @staticmethod
    def batch_get(hook: StackHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.describe_change_sets(ids)
