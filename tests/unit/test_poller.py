"""The shared batched poller, driven by a fake batch call."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError

from release_orchestrator.hooks.base import AwsCallError, aws_call
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.poller import BatchPoller, BatchSpec, ItemNotFound, get_poller

SPEC = BatchSpec(
    service="fake",
    batch_call="BatchGetThings",
    id_key="id",
    status_key="status",
    max_batch=100,
    terminal_states=frozenset({"DONE", "BROKEN"}),
)
FAST = 0.01


def throttling() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "BatchGetThings")


def through_a_hook(err: Exception) -> AwsCallError:
    """The error as the hooks' batch methods raise it (aws_call wraps the botocore error)."""
    try:
        with aws_call("BatchGetThings", "things a"):
            raise err
    except AwsCallError as wrapped:
        return wrapped


class FakeService:
    """Items whose status the test sets; records every batch call. Each call raises the next of
    ``failures`` while there are some (None: that call answers)."""

    def __init__(self, ids=()):
        self.status = {item_id: "RUNNING" for item_id in ids}
        self.calls: list[list[str]] = []
        self.failures: list[BaseException] = []

    async def fetch(self, ids: list[str]) -> list[dict]:
        self.calls.append(list(ids))
        if self.failures and (failure := self.failures.pop(0)) is not None:
            raise failure
        return [{"id": i, "status": self.status[i]} for i in ids if i in self.status]


def make_poller(service: FakeService, **kwargs) -> BatchPoller:
    kwargs.setdefault("backoff_base", FAST)
    kwargs.setdefault("backoff_cap", 4 * FAST)
    kwargs.setdefault("first_look", FAST)
    return BatchPoller(SPEC, service.fetch, **kwargs)


_sleep = asyncio.sleep  # not the recording one of `backoffs`


async def until(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await _sleep(FAST / 2)


@pytest.fixture
def backoffs(monkeypatch):
    """Every back-off the poller sleeps (its only asyncio.sleep), in seconds; each is cut short to FAST."""
    slept: list[float] = []

    async def recording_sleep(seconds, *args, **kwargs):
        slept.append(seconds)
        await _sleep(min(seconds, FAST))

    monkeypatch.setattr(poller_module.asyncio, "sleep", recording_sleep)
    return slept


def test_250_waiting_ids_cost_3_calls_per_round():
    ids = [f"build-{n}" for n in range(250)]
    service = FakeService(ids)

    async def scenario():
        poller = make_poller(service)
        # An interval long enough that all 250, however slowly they register, are due in the first round.
        waits = [asyncio.ensure_future(poller.wait(i, interval=1.0)) for i in ids]
        await until(lambda: len(service.calls) >= 3)
        assert [len(c) for c in service.calls[:3]] == [100, 100, 50]
        assert sorted(sum(service.calls[:3], [])) == sorted(ids)
        for item_id in ids:
            service.status[item_id] = "DONE"
        results = await asyncio.gather(*waits)
        assert {r["id"] for r in results} == set(ids)
        assert all(r["status"] == "DONE" for r in results)
        # Every round asked about every waiting id in ceil(250 / 100) calls.
        assert poller.api_calls == 3 * poller.rounds
        assert poller.ids_polled == 250 * poller.rounds
        assert poller.stats["waiting"] == 0

    asyncio.run(scenario())


def test_a_new_id_is_looked_at_soon_not_a_whole_interval_later():
    service = FakeService(["old", "new"])

    async def scenario():
        loop = asyncio.get_running_loop()
        poller = make_poller(service, first_look=0.05)
        old = asyncio.ensure_future(poller.wait("old", interval=60))
        await until(lambda: poller.rounds == 1)
        assert service.calls == [["old"]]
        service.status["new"] = "DONE"  # e.g. a short build, finished by the time its trigger starts
        registered = loop.time()
        assert (await poller.wait("new", interval=60))["status"] == "DONE"
        # Its first look came after the short window, while "old" is not due for a minute: only "new" was asked.
        assert 0.05 <= loop.time() - registered < 1.0
        assert service.calls == [["old"], ["new"]]
        assert not old.done()
        old.cancel()

    asyncio.run(scenario())


def test_ids_due_within_half_an_interval_share_a_round():
    service = FakeService(["a", "b"])

    async def scenario():
        poller = make_poller(service, first_look=0.0)
        wait_a = asyncio.ensure_future(poller.wait("a", interval=1.0))
        await until(lambda: poller.rounds == 1)
        # The scenario, not a wait: "b" registers 0.3 s later, its first look due long before "a"'s next.
        await asyncio.sleep(0.3)
        wait_b = asyncio.ensure_future(poller.wait("b", interval=1.0))
        await until(lambda: poller.rounds == 2)
        assert service.calls[1] == ["b"]
        # "a" is due 0.7 s after its first look, "b" 0.3 s later: within half an interval, so one call.
        await until(lambda: poller.rounds == 3)
        assert sorted(service.calls[2]) == ["a", "b"]
        assert len(service.calls) == 3
        wait_a.cancel()
        wait_b.cancel()

    asyncio.run(scenario())


def test_each_waiter_resolves_when_its_item_is_terminal():
    service = FakeService(["a", "b"])

    async def scenario():
        poller = make_poller(service)
        wait_a = asyncio.ensure_future(poller.wait("a", interval=FAST))
        wait_b = asyncio.ensure_future(poller.wait("b", interval=FAST))
        service.status["a"] = "BROKEN"
        assert (await wait_a)["status"] == "BROKEN"
        assert not wait_b.done()
        assert poller.waiting_ids == ["b"]
        service.status["b"] = "DONE"
        assert (await wait_b)["status"] == "DONE"

    asyncio.run(scenario())


def test_extra_stop_states_per_waiter():
    service = FakeService(["d"])

    async def scenario():
        poller = make_poller(service)
        at_ready = asyncio.ensure_future(poller.wait("d", interval=FAST, stop_states={"READY"}))
        to_the_end = asyncio.ensure_future(poller.wait("d", interval=FAST))
        service.status["d"] = "READY"
        assert (await at_ready)["status"] == "READY"
        looked = len(service.calls)
        # Until a second look (so the first was handled), or the waiter wrongly ended.
        await until(lambda: to_the_end.done() or len(service.calls) >= looked + 2)
        assert not to_the_end.done()
        service.status["d"] = "DONE"
        assert (await to_the_end)["status"] == "DONE"

    asyncio.run(scenario())


@pytest.mark.parametrize("raised_by", ["botocore", "hook"])
def test_throttling_backs_off_and_retries(backoffs, raised_by):
    service = FakeService(["a"])
    service.failures = [throttling() if raised_by == "botocore" else through_a_hook(throttling()) for _ in range(3)]
    service.status["a"] = "DONE"

    async def scenario():
        poller = make_poller(service, backoff_base=1.0, backoff_cap=3.0)
        item = await poller.wait("a", interval=FAST)
        assert item["status"] == "DONE"
        assert poller.throttled == 3
        assert poller.api_calls == 4

    asyncio.run(scenario())
    # Exponential with jitter: within [d/2, d] of 1, 2, then capped at 3.
    assert len(backoffs) == 3
    for delay, nominal in zip(backoffs, (1.0, 2.0, 3.0)):
        assert nominal / 2 <= delay <= nominal


def test_backoff_is_capped():
    poller = make_poller(FakeService(), backoff_base=1.0, backoff_cap=8.0)
    delays = [poller._backoff() for _ in range(10)]
    assert max(delays) <= 8.0
    assert min(delays[5:]) >= 4.0  # at the cap, jitter keeps at least half


def test_backoff_starts_over_after_an_answered_call(backoffs):
    service = FakeService(["a"])
    # Throttled three times, answered once (still running), then throttled again.
    service.failures = [throttling(), throttling(), throttling(), None, throttling()]

    async def scenario():
        poller = make_poller(service, backoff_base=1.0, backoff_cap=8.0)
        waiting = asyncio.ensure_future(poller.wait("a", interval=FAST))
        await until(lambda: len(backoffs) == 4)
        service.status["a"] = "DONE"
        assert (await waiting)["status"] == "DONE"

    asyncio.run(scenario())
    assert 2.0 <= backoffs[2] <= 4.0  # the third throttle in a row: nominal 4
    assert 0.5 <= backoffs[3] <= 1.0  # after the answer: the first back-off again, not nominal 8


def test_non_transient_error_fails_the_waiters_of_that_batch():
    service = FakeService(["a"])
    service.failures = [ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchGetThings")]

    async def scenario():
        poller = make_poller(service)
        with pytest.raises(ClientError, match="AccessDenied"):
            await poller.wait("a", interval=FAST)

    asyncio.run(scenario())


def test_unknown_id_fails_after_a_few_rounds():
    service = FakeService([])

    async def scenario():
        poller = make_poller(service, not_found_limit=2)
        with pytest.raises(ItemNotFound):
            await poller.wait("ghost", interval=FAST)

    asyncio.run(scenario())


def test_cancelling_one_waiter_leaves_the_others():
    service = FakeService(["a", "b"])

    async def scenario():
        poller = make_poller(service)
        wait_a = asyncio.ensure_future(poller.wait("a", interval=FAST))
        wait_b = asyncio.ensure_future(poller.wait("b", interval=FAST))
        await until(lambda: poller.rounds >= 1)
        wait_a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait_a
        assert poller.waiting_ids == ["b"]
        calls_before = len(service.calls)
        await until(lambda: len(service.calls) > calls_before + 1)
        assert service.calls[-1] == ["b"]
        service.status["b"] = "DONE"
        assert (await wait_b)["status"] == "DONE"
        assert wait_a.cancelled()

    asyncio.run(scenario())


def test_poller_stops_when_nobody_waits_and_restarts_on_demand():
    service = FakeService(["a", "b"])

    async def scenario():
        poller = make_poller(service)
        service.status["a"] = "DONE"
        await poller.wait("a", interval=FAST)
        await until(lambda: poller._task.done())
        service.status["b"] = "DONE"
        assert (await poller.wait("b", interval=FAST))["id"] == "b"

    asyncio.run(scenario())


def test_one_poller_per_key_and_event_loop():
    made = []

    def factory():
        made.append(make_poller(FakeService()))
        return made[-1]

    async def lookups():
        first = get_poller(("fake", "aws_default", "us-east-1"), factory)
        again = get_poller(("fake", "aws_default", "us-east-1"), factory)
        other_region = get_poller(("fake", "aws_default", "eu-west-1"), factory)
        assert first is again
        assert first is not other_region
        return first

    in_loop_1 = asyncio.run(lookups())
    in_loop_2 = asyncio.run(lookups())
    # Futures belong to one loop: a second loop gets its own poller.
    assert in_loop_1 is not in_loop_2
    assert len(made) == 4


def test_a_result_ends_the_task_as_soon_as_the_poller_has_it(monkeypatch, task_xcoms):
    """No result is held back after deferral: the trigger ends the task instead of resuming it."""
    import time as time_module

    from airflow.triggers.base import TaskSuccessEvent

    from release_orchestrator.results.codebuild import BuildResult
    from release_orchestrator.triggers import base
    from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

    async def instant_wait(self, item_id, interval, stop_states):
        return {"id": item_id, "buildStatus": "SUCCEEDED", "logs": {"deepLink": "https://logs"}}

    monkeypatch.setattr(base.BatchPoller, "wait", instant_wait)

    async def run():
        start = time_module.monotonic()
        trigger = CodeBuildBuildTrigger(build_id="p:1", poll_interval=30, result=BuildResult("p").to_dict())
        event = await anext(trigger.run())
        return event, time_module.monotonic() - start

    event, elapsed = asyncio.run(run())
    assert isinstance(event, TaskSuccessEvent)
    assert task_xcoms[("p:1", "return_value")]["BuildId"] == "p:1"
    assert elapsed < 1.0


def test_a_result_reads_aws_with_the_client_its_poller_polls_with(monkeypatch, task_xcoms):
    """In the triggerer, a finished build's outputs cost no second client (connection, session, service model)."""
    from airflow.triggers.base import TaskSuccessEvent

    from release_orchestrator.hooks.codebuild import CodeBuildHook
    from release_orchestrator.results.codebuild import BuildResult
    from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

    built = []
    original_init = CodeBuildHook.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(CodeBuildHook, "__init__", counting_init)
    monkeypatch.setattr(CodeBuildHook, "conn_region_name", "eu-west-1")
    monkeypatch.setattr(CodeBuildHook, "conn_partition", "aws")

    async def run():
        trigger = CodeBuildBuildTrigger(build_id="p:1", poll_interval=30, result=BuildResult("p").to_dict())
        poller = trigger.poller()

        async def finished(ids):
            return [{"id": "p:1", "buildStatus": "SUCCEEDED"}]  # no deep link: the result builds one

        poller.fetch = finished
        return await anext(trigger.run()), trigger

    event, trigger = asyncio.run(run())
    assert isinstance(event, TaskSuccessEvent)
    assert "eu-west-1" in task_xcoms[("p:1", "return_value")]["LogsUrl"]
    assert len(built) == 1  # the poller's hook, reused by the result for its links
