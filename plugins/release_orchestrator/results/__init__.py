"""What finished AWS work means for its action: the action's outputs, or why it failed.

Computed where the wait ends: in the triggerer, which then ends the task itself (TaskSuccessEvent
with the outputs as XCom, TaskFailedEvent with the reason), so the task never resumes on a worker
after deferring (see docs/architecture.md, "Waits end in the triggerer"); and in the worker for the
rare action whose work is already finished when it starts or that waits without deferring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from airflow.providers.common.compat.sdk import AirflowException

# XCom of a task that failed in the triggerer: why it failed (failure notifications read it, since
# Airflow passes no exception to callbacks of tasks ended by their trigger).
FAILURE_XCOM_KEY = "failure_reason"

HookT = TypeVar("HookT")


class ActionFailed(AirflowException):
    """The action's work finished without success; the message says why."""


@dataclass(kw_only=True)
class AwsResult:
    """What every result needs to read AWS: the action's connection, as plain data for the trigger's kwargs."""

    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    verify: bool | str | None = None
    botocore_config: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]):
        return cls(**value)

    def hook_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of any AwsBaseHook for this connection."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def __post_init__(self) -> None:
        # Hooks by class for this connection; not a field, so not serialized. The trigger hands in
        # the ones its poller shares, so reading a result builds no second client.
        self.hooks: dict[type, Any] = {}

    def shared_hook(self, hook_class: type[HookT]) -> HookT:
        """The hook of ``hook_class`` for this connection, built on first use."""
        if hook_class not in self.hooks:
            self.hooks[hook_class] = hook_class(**self.hook_kwargs())
        return self.hooks[hook_class]


def own_xcom(ti: Any, key: str) -> Any:
    """A task instance's own XCom `key`, None when there is none or it cannot be read (for messages only)."""
    if ti is None or not hasattr(ti, "xcom_pull"):
        return None
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key=key)
    except Exception:  # noqa: BLE001 - such values only shape a message
        return None


def failure_reason(ti: Any) -> str | None:
    """The reason a task ended by its trigger failed, from its XCom (None if there is none)."""
    value = own_xcom(ti, FAILURE_XCOM_KEY)
    return value if isinstance(value, str) and value else None
