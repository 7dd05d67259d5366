"""Base for triggers that wait on one AWS item through the shared batched poller."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from release_orchestrator.notifications.notifier import announce_failure, announce_success
from release_orchestrator.results import FAILURE_XCOM_KEY, ActionFailed
from release_orchestrator.triggers.poller import BatchPoller, BatchSpec, get_poller, loop_shared

XCOM_RETURN_KEY = "return_value"  # where Airflow keeps what a task returns

# Task states after which a user action on a deferred task means "abandon the work".
# Anything else (cleared -> None/scheduled/queued/running, marked success) keeps it running:
# a cleared task reattaches to it.
ABANDONED_STATES = frozenset({"failed", "upstream_failed", "skipped", "removed"})


def on_kill_budget() -> float:
    """Seconds ``on_kill`` may take: a little less than the triggerer allows it (``on_kill_timeout``)."""
    try:
        from airflow.configuration import conf

        allowed = conf.getfloat("triggerer", "on_kill_timeout", fallback=30.0)
    except Exception:
        allowed = 30.0
    return max(1.0, allowed - 2.0)


def json_safe(value: Any) -> Any:
    """Datetimes and other boto3 types as strings, so the event serializes anywhere."""
    return json.loads(json.dumps(value, default=str))


async def finish_despite_cancellation(work: Callable[[], None], log: Any, what: str) -> None:
    """Run `work` in a thread from a trigger's on_kill, to the end.

    Airflow 3.3.2's triggerer cancels a trigger again at every state sync until it has ended (its
    supervisor re-sends the trigger in ``to_cancel`` each time), i.e. while on_kill runs. Those
    repeated cancellations must not abandon the work half-way (or before it starts), so it runs in
    one thread, awaited through a shield, and further cancellations are waited out until shortly
    before ``[triggerer] on_kill_timeout``; past that the thread still finishes on its own.
    """
    loop = asyncio.get_running_loop()
    future = asyncio.ensure_future(asyncio.to_thread(work))
    deadline = loop.time() + on_kill_budget()
    while True:
        try:
            await asyncio.shield(future)
            return
        except asyncio.CancelledError:
            if not future.done() and loop.time() >= deadline:
                raise
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            if future.done():
                if not future.cancelled() and future.exception() is not None:
                    log.warning("%s failed", what, exc_info=future.exception())
                return
        except Exception:  # noqa: BLE001 - logged; the caller has nothing better to do with it
            log.warning("%s failed", what, exc_info=True)
            return


def write_task_xcom(ti: Any, key: str, value: Any) -> None:
    """Write an XCom of the trigger's task instance through the Task SDK, as a worker would.

    Not through the end event's ``xcoms``: Airflow 3.3.2 stores those JSON-encoded a second time,
    so pulling them gives a string instead of the value.
    """
    from airflow.sdk.execution_time.xcom import XCom

    map_index = getattr(ti, "map_index", -1)
    XCom.set(
        key,
        value,
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=-1 if map_index is None else map_index,
    )


_task_sdk_warm_up: asyncio.Task | None = None  # kept referenced: the loop holds tasks only weakly
_task_sdk_warmed_up = False


def warm_up_task_sdk(ti: Any) -> asyncio.Task | None:
    """Once per triggerer: make the Task SDK's first request while the trigger waits, not when it ends.

    The triggerer answers a trigger's first XCom request by building Airflow's in-process execution
    API (1.5 s on an idle machine, 5-9 s measured while the local environment starts), and handles no
    other request meanwhile (connections included); the first action to finish in a fresh triggerer
    waited for that after its work was done. A read of the task's own failure reason (normally none)
    pays it while the work runs. Returns the background task, None if done before.
    """
    global _task_sdk_warm_up, _task_sdk_warmed_up
    if _task_sdk_warmed_up:
        return None
    _task_sdk_warmed_up = True

    def read_own_xcom() -> None:
        from airflow.sdk.execution_time.xcom import XCom

        map_index = getattr(ti, "map_index", -1)
        XCom.get_one(
            key=FAILURE_XCOM_KEY,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=-1 if map_index is None else map_index,
        )

    async def quietly() -> None:
        try:
            await asyncio.to_thread(read_own_xcom)
        except Exception:  # noqa: BLE001 - only an optimisation: the real request will say what is wrong
            pass

    _task_sdk_warm_up = asyncio.get_running_loop().create_task(quietly(), name="task-sdk-warm-up")
    return _task_sdk_warm_up


def failed_task_event(
    write_xcom: Callable[[str, Any], None], failure_notices: list[dict[str, Any]] | None, ti: Any, reason: str, log: Any
) -> TaskFailedEvent:
    """In a trigger's thread: record why its task fails (XCom `failure_reason`, which failure
    notifications read) and publish the task's failure events; the event that fails the task."""
    try:
        write_xcom(FAILURE_XCOM_KEY, reason)
    except Exception:  # noqa: BLE001 - the task fails all the same; only the message loses its reason
        log.warning("Could not record the failure reason", exc_info=True)
    announce_failure(failure_notices, ti, reason)
    return TaskFailedEvent()


class BatchPolledTrigger(BaseTrigger):
    """Waits until one item reaches a final status, asking AWS through the shared poller, and ends
    the task itself.

    With ``result`` (what the operator passes: the serialized result object of its action family),
    the trigger turns the finished item into the action's outputs or failure and ends the task
    directly (TaskSuccessEvent / TaskFailedEvent, the outputs or the reason written as XCom
    first), so the task never resumes on a worker after
    deferring. That leaves no window for Airflow's stale defer-exit race (apache/airflow#72716: the
    executor's "exited" event of the deferring try, processed after a resumed try already runs,
    fails it), whatever the timing, and saves a worker slot and a task start per action. Without
    ``result`` (a trigger serialized by an earlier version) it fires a plain event and the task
    resumes in ``execute_complete`` as before.

    Subclasses set ``spec``, ``hook_class``, ``id_field`` (the constructor keyword holding the id)
    and ``result_class``, and implement ``summary`` (what of the item goes into a resume event),
    ``outcome`` and ``stop`` (stopping the work).
    """

    spec: ClassVar[BatchSpec]
    hook_class: ClassVar[type[AwsBaseHook]]
    id_field: ClassVar[str]
    result_class: ClassVar[Any]

    def __init__(
        self,
        *,
        item_id: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 30,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        result: dict[str, Any] | None = None,
        failure_notices: list[dict[str, Any]] | None = None,
        success_notices: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.item_id = item_id
        self.failure_notices = failure_notices
        self.success_notices = success_notices  # action-succeeded: Airflow runs no success callback for it
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = float(poll_interval)
        self.verify = verify
        self.botocore_config = botocore_config
        self.result = result

    # What the subclass adds to serialize() and to the poller's stop states.
    def extra_kwargs(self) -> dict[str, Any]:
        return {}

    def stop_states(self) -> frozenset[str]:
        return frozenset()

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def outcome(self, status: str | None) -> str:
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                self.id_field: self.item_id,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "result": self.result,
                "failure_notices": self.failure_notices,
                "success_notices": self.success_notices,
                **self.extra_kwargs(),
            },
        )

    def connection_key(self) -> tuple:
        return (
            self.aws_conn_id,
            self.region_name,
            json.dumps(self.verify),
            json.dumps(self.botocore_config, sort_keys=True),
        )

    def hooks(self) -> dict[type, AwsBaseHook]:
        """This connection's hooks by class in the running event loop: the poller's client, and the ones
        results read with, are built once (0.3-0.5 s each: connection, session, service model)."""
        return loop_shared(("hooks", *self.connection_key()), dict)

    def hook(self) -> AwsBaseHook:
        """The loop's shared hook; a new one when called from a thread (stopping the work on kill)."""
        try:
            hooks = self.hooks()
        except RuntimeError:  # no running event loop in this thread
            hooks = {}
        if self.hook_class not in hooks:
            hooks[self.hook_class] = self.hook_class(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                config=self.botocore_config,
            )
        return hooks[self.hook_class]

    def poller(self) -> BatchPoller:
        return get_poller((self.spec.service, *self.connection_key()), self._make_poller)

    @staticmethod
    def batch_get(hook: Any, ids: list[str]) -> list[dict[str, Any]]:
        """The items of ``ids`` (at most ``spec.max_batch``), through the hook's batch method."""
        raise NotImplementedError

    def _make_poller(self) -> BatchPoller:
        hook = self.hook()
        batch_get = type(self).batch_get  # not bound: the poller outlives this trigger

        async def fetch(ids: list[str]) -> list[dict[str, Any]]:
            # The first call also builds the client (reads the connection): in the thread too.
            return await asyncio.to_thread(batch_get, hook, ids)

        return BatchPoller(self.spec, fetch)

    async def wait_until_done(self) -> dict[str, Any]:
        """The item once it is finished (subclasses may act on the way, e.g. continue a deployment)."""
        return await self.poller().wait(self.item_id, interval=self.poll_interval, stop_states=self.stop_states())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.result is None:
            async for event in self._run_resuming():
                yield event
            return
        what = f"{self.spec.service} {self.item_id}"
        warm_up_task_sdk(self.task_instance)
        try:
            item = await self.wait_until_done()
            # Reads logs and reports, so in a thread like every AWS call here.
            result = self.result_class.from_dict(self.result)
            result.hooks = self.hooks()
            outputs = await asyncio.to_thread(result.conclude, item, self.log)
        except ActionFailed as failure:
            self.log.error("%s", failure)
            yield await self.fail_task(str(failure))
            return
        except Exception as err:
            reason = f"Waiting for {what} failed: {err}"
            self.log.error("%s", reason, exc_info=True)
            yield await self.fail_task(reason)
            return
        # The outputs first: the task must not succeed without them (a failed write fails the trigger,
        # and Airflow then fails the task).
        await asyncio.to_thread(self.write_xcom, XCOM_RETURN_KEY, json_safe(outputs))
        if self.success_notices:
            await asyncio.to_thread(announce_success, self.success_notices, self.task_instance)
        yield TaskSuccessEvent()

    async def fail_task(self, reason: str) -> TaskFailedEvent:
        return await asyncio.to_thread(
            failed_task_event, self.write_xcom, self.failure_notices, self.task_instance, reason, self.log
        )

    def write_xcom(self, key: str, value: Any) -> None:
        write_task_xcom(self.task_instance, key, value)

    async def _run_resuming(self) -> AsyncIterator[TriggerEvent]:
        """The event of an earlier version's trigger: the task resumes on a worker to conclude."""
        try:
            item = await self.poller().wait(self.item_id, interval=self.poll_interval, stop_states=self.stop_states())
        except Exception as err:
            yield TriggerEvent(
                {
                    "status": "error",
                    self.id_field: self.item_id,
                    "message": f"Waiting for {self.spec.service} {self.item_id} failed: {err}",
                }
            )
            return
        status = item.get(self.spec.status_key)
        yield TriggerEvent(
            {
                "status": self.outcome(status),
                self.id_field: self.item_id,
                "item_status": status,
                "item": json_safe(self.summary(item)),
            }
        )

    async def on_kill(self) -> None:
        """Stop the work when the user abandoned the deferred task (marked it failed).

        Airflow calls this for mark failed, mark success and clear alike; the task's current
        state tells them apart. A cleared task keeps its work, as its next try reattaches to it.
        """
        await finish_despite_cancellation(self._act_on_user_action, self.log, "acting on the user's action")

    def _act_on_user_action(self) -> None:
        """In a thread: read the task's state; stop the work when the task was abandoned."""
        if not self._task_abandoned():
            self.log.info("Task cleared or marked success: leaving %s %s running", self.spec.service, self.item_id)
            return
        self.log.info("Task abandoned: stopping %s %s", self.spec.service, self.item_id)
        try:
            self.stop()
        except Exception:
            self.log.warning("Could not stop %s %s", self.spec.service, self.item_id, exc_info=True)

    def _task_abandoned(self) -> bool:
        ti = self.task_instance
        if ti is None:
            return True
        try:
            state = self._task_state(ti)
        except Exception:
            self.log.warning("Could not read the task's state; stopping to be safe", exc_info=True)
            return True
        if state is ...:
            return True
        # States may come back as TaskInstanceState members or plain strings.
        return getattr(state, "value", state) in ABANDONED_STATES

    @staticmethod
    def _task_state(ti: Any) -> Any:
        """The task instance's current state, ``...`` when the task instance is not found."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        map_index = getattr(ti, "map_index", -1)
        map_index = -1 if map_index is None else map_index
        states = RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=None if map_index < 0 else map_index,
        )
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
        return states.get(ti.run_id, {}).get(key, ...)
