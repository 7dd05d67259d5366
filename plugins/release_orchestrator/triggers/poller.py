"""One batched status poller per (service, connection, region), shared by every trigger waiting on it.

A trigger registers the id it waits for and awaits its result. The poller asks AWS about all
registered ids with the service's batch call (BatchGetBuilds: 100 ids a call, BatchGetDeployments:
25), once per interval, so N waiting builds cost ceil(N / 100) calls per interval rather than N.
A new id gets its first look ``first_look`` seconds after it registers (not a whole interval later):
the triggerer starts a trigger a second or more after the action started it, so a short build is often
finished by then. Ids whose look is due within half an interval are asked in the same round.
It backs off (exponential, with jitter, capped) while AWS throttles, and resolves each waiter when
its item reaches a status the waiter stops at.

boto3 is synchronous, so each call runs in a thread (``asyncio.to_thread``). Futures and tasks
belong to one event loop, so there is one registry of pollers per loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from release_orchestrator.hooks.base import AwsCallError

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
    }
)

BatchFetch = Callable[[list[str]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class BatchSpec:
    """The service-specific part of a poller."""

    service: str  # e.g. "codebuild"
    batch_call: str  # the AWS operation the hook's batch method makes, for messages: e.g. "BatchGetBuilds"
    id_key: str  # an item's id, e.g. "id"
    status_key: str  # an item's status, e.g. "buildStatus"
    max_batch: int  # ids per call
    terminal_states: frozenset[str]


class ItemNotFound(LookupError):
    """AWS kept answering without the item: it does not exist (anymore), or in another region."""


def _aws_code(err: BaseException) -> str | None:
    """AWS's error code of a botocore error, or of the hooks' AwsCallError raised from one."""
    if isinstance(err, AwsCallError):
        return err.code
    if isinstance(err, ClientError):
        return err.response.get("Error", {}).get("Code")
    return None


def is_throttling(err: BaseException) -> bool:
    return _aws_code(err) in THROTTLING_CODES


def is_transient(err: BaseException) -> bool:
    """Errors worth another try later rather than failing every waiter of the batch."""
    cause = err.__cause__ if isinstance(err, AwsCallError) else err
    return is_throttling(err) or isinstance(cause, (BotoConnectionError, HTTPClientError))


@dataclass
class _Waiter:
    future: asyncio.Future
    stop_states: frozenset[str]
    interval: float


class BatchPoller:
    """Polls every registered id with one batch call per ``max_batch`` ids per interval.

    :param spec: the service's batch call and item shape.
    :param fetch: async callable taking a list of ids (at most ``spec.max_batch``) and returning the items.
    :param backoff_base: first back-off after a throttled call, seconds.
    :param backoff_cap: longest back-off, seconds.
    :param not_found_limit: rounds an id may be missing from the answers before its waiter fails.
    :param first_look: seconds from an id's registration to its first look; the short window lets the
        triggers that start together share calls.
    """

    def __init__(
        self,
        spec: BatchSpec,
        fetch: BatchFetch,
        *,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        not_found_limit: int = 3,
        first_look: float = 0.1,
    ) -> None:
        self.spec = spec
        self.fetch = fetch
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.not_found_limit = not_found_limit
        self.first_look = first_look
        self._waiters: dict[str, list[_Waiter]] = {}
        self._due: dict[str, float] = {}  # id -> event-loop time of its next look
        self._missing: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None
        self._throttled_in_a_row = 0
        # Counters for benchmarks and logs.
        self.api_calls = 0
        self.ids_polled = 0
        self.throttled = 0
        self.rounds = 0

    @property
    def stats(self) -> dict[str, int]:
        return {
            "api_calls": self.api_calls,
            "ids_polled": self.ids_polled,
            "throttled": self.throttled,
            "rounds": self.rounds,
            "waiting": len(self._waiters),
        }

    @property
    def waiting_ids(self) -> list[str]:
        return list(self._waiters)

    async def wait(self, item_id: str, *, interval: float = 30.0, stop_states: Collection[str] = ()) -> dict[str, Any]:
        """Wait until ``item_id`` reaches a terminal status (or one of ``stop_states``); return the item."""
        waiter = _Waiter(
            future=asyncio.get_running_loop().create_future(),
            stop_states=self.spec.terminal_states | frozenset(stop_states),
            interval=float(interval),
        )
        if item_id not in self._waiters:
            self._due[item_id] = asyncio.get_running_loop().time() + self.first_look
        self._waiters.setdefault(item_id, []).append(waiter)
        self._ensure_running()
        try:
            return await waiter.future
        finally:
            # Also on cancellation: forget this waiter only, the others keep waiting.
            self._forget(item_id, waiter)

    def _forget(self, item_id: str, waiter: _Waiter) -> None:
        waiters = self._waiters.get(item_id)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[item_id]
                self._missing.pop(item_id, None)
                self._due.pop(item_id, None)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.spec.service}-batch-poller")
        elif self._wakeup is not None:
            # The new waiter's first look may be due before the round being slept for.
            self._wakeup.set()

    def _interval(self, item_id: str | None = None) -> float:
        """The shortest interval asked for ``item_id`` (default: for any id)."""
        waiters = (
            self._waiters.get(item_id, []) if item_id is not None else [w for ws in self._waiters.values() for w in ws]
        )
        return min((w.interval for w in waiters), default=30.0)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when a waiter registers, so the interval is re-evaluated."""
        assert self._wakeup is not None
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _run(self) -> None:
        try:
            while self._waiters:
                await self._sleep_until_due()
                if not self._waiters:
                    break
                await self._poll_round()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug in here must not leave triggers waiting forever
            log.exception("%s poller stopped", self.spec.service)
            for waiters in list(self._waiters.values()):
                for waiter in waiters:
                    if not waiter.future.done():
                        waiter.future.set_exception(err)

    async def _sleep_until_due(self) -> None:
        """Sleep until some id's look is due; a waiter registering meanwhile re-evaluates the deadline."""
        loop = asyncio.get_running_loop()
        while self._waiters and (remaining := min(self._due.values(), default=0.0) - loop.time()) > 0:
            await self._sleep(remaining)

    async def _poll_round(self) -> None:
        self.rounds += 1
        loop = asyncio.get_running_loop()
        # The ids due now, and those due within half an interval: one call rather than two in a row.
        horizon = loop.time() + self._interval() / 2
        ids = [item_id for item_id in self._waiters if self._due.get(item_id, 0.0) <= horizon]
        size = self.spec.max_batch
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        while chunks:
            chunk = [item_id for item_id in chunks[0] if item_id in self._waiters]
            if not chunk:
                chunks.pop(0)
                continue
            try:
                self.api_calls += 1
                self.ids_polled += len(chunk)
                items = await self.fetch(chunk)
            except Exception as err:
                if not is_transient(err):
                    self._fail(chunk, err)
                    chunks.pop(0)
                    continue
                if is_throttling(err):
                    self.throttled += 1
                # Retry the same chunk after the back-off; the rest of the round waits too.
                await asyncio.sleep(self._backoff())
                continue
            self._throttled_in_a_row = 0
            chunks.pop(0)
            looked_at = loop.time()
            for item_id in chunk:
                if item_id in self._waiters:
                    self._due[item_id] = looked_at + self._interval(item_id)
            self._resolve(chunk, items)

    def _backoff(self) -> float:
        """Exponential back-off with jitter ("equal jitter"), capped."""
        self._throttled_in_a_row += 1
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (self._throttled_in_a_row - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def _resolve(self, chunk: list[str], items: list[dict[str, Any]]) -> None:
        by_id = {item.get(self.spec.id_key): item for item in items}
        for item_id in chunk:
            item = by_id.get(item_id)
            if item is None:
                self._missing[item_id] = self._missing.get(item_id, 0) + 1
                if self._missing[item_id] >= self.not_found_limit:
                    self._fail(
                        [item_id],
                        ItemNotFound(
                            f"{self.spec.batch_call} did not return {item_id!r} in {self._missing[item_id]} rounds"
                        ),
                    )
                continue
            self._missing.pop(item_id, None)
            status = item.get(self.spec.status_key)
            for waiter in list(self._waiters.get(item_id, [])):
                if status in waiter.stop_states and not waiter.future.done():
                    waiter.future.set_result(item)

    def _fail(self, chunk: list[str], err: BaseException) -> None:
        for item_id in chunk:
            for waiter in list(self._waiters.get(item_id, [])):
                if not waiter.future.done():
                    waiter.future.set_exception(err)


# loop -> key -> poller (or other object shared in that loop). Weak on the loop, so the pollers of
# closed test loops go away with them.
_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_registry_lock = threading.RLock()  # a factory may itself ask for a shared object

SharedT = TypeVar("SharedT")


def loop_shared(key: Hashable, factory: Callable[[], SharedT]) -> SharedT:
    """The object for ``key`` in the running event loop, made by ``factory`` on first use."""
    loop = asyncio.get_running_loop()
    with _registry_lock:
        objects = _registry.setdefault(loop, {})
        if key not in objects:
            objects[key] = factory()
        return objects[key]


def get_poller(key: Hashable, factory: Callable[[], BatchPoller]) -> BatchPoller:
    """The poller for ``key`` in the running event loop, made by ``factory`` on first use."""
    return loop_shared(("poller", key), factory)


def all_pollers() -> list[BatchPoller]:
    """Every live poller, in every event loop (for benchmarks and diagnostics)."""
    with _registry_lock:
        return [
            poller for objects in _registry.values() for poller in objects.values() if isinstance(poller, BatchPoller)
        ]


def reset_pollers() -> None:
    """Forget every poller (tests)."""
    with _registry_lock:
        _registry.clear()
