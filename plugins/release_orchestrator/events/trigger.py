"""The asset watcher's trigger: source change events from an SQS queue, for one watched source.

One queue usually carries the events of every pipeline (EventBridge rules put CodeCommit, ECR and S3
events in it). Competing SQS consumers would steal each other's messages, so the triggers of one queue
share one poll (Airflow's shared streams, `BaseEventTrigger.shared_stream_key`): the triggerer runs a
single receive loop per (queue, connection, region) and hands every message to every trigger of that
queue; each trigger keeps the messages that match its source and fires one event per match (the asset
event of its asset, which starts the DAGs scheduled on it).

The stream runs in ack mode: a message is deleted from the queue only once every trigger has looked at
it and the asset events it produced are stored in the metadata DB. A message no trigger wants is deleted
too (nothing would ever want it). A message some trigger failed on is left for SQS to deliver again
after its visibility timeout; triggers remember the messages they already fired for (by SQS message id),
so a redelivery does not start a pipeline twice (within the life of the triggerer process).

boto3 is synchronous: every SQS call runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

from release_orchestrator import settings
from release_orchestrator.events.sources import PAYLOAD_KIND, WatchedSource, changes_in_message, describe_change

log = logging.getLogger(__name__)

# Their defaults come from settings.py (EVENTS_WAIT_SECONDS: the long-poll wait of one
# ReceiveMessage; EVENTS_VISIBILITY_TIMEOUT: longer than Airflow's shared-stream ack timeout, 300 s by
# default, so a message is not delivered again while its events are being stored; EVENTS_STARTUP_DELAY:
# the triggers of one queue, started together by the triggerer, all join the shared poll before any
# message is handed out).
MAX_BACKOFF = 15.0
REMEMBERED_EVENTS = 10_000
# Long polls hold a thread for up to WAIT_SECONDS: they get their own threads rather than the event loop's
# default executor (a few threads on a small machine, shared with every other trigger's boto3 calls).
_SQS_THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="release-source-sqs")


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_SQS_THREADS, fn, *args)


class SqsEventProducer(SharedStreamProducer):
    """The shared receive loop of one queue; deletes messages once every subscriber is done with them."""

    def __init__(
        self,
        queue: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        *,
        wait_seconds: int | None = None,
        visibility_timeout: int | None = None,
        startup_delay: float | None = None,
        client: Any = None,
    ):
        self.queue = queue
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.wait_seconds = settings.EVENTS_WAIT_SECONDS.get() if wait_seconds is None else wait_seconds
        self.visibility_timeout = (
            settings.EVENTS_VISIBILITY_TIMEOUT.get() if visibility_timeout is None else visibility_timeout
        )
        self.startup_delay = settings.EVENTS_STARTUP_DELAY.get() if startup_delay is None else startup_delay
        self._client = client
        self._url: str | None = queue if queue.startswith(("https://", "http://")) else None
        self._closed = threading.Event()

    # ---- SQS calls (in threads) ----------------------------------------------------------------------------
    def client(self) -> Any:
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.sqs import SqsHook

            self._client = SqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn
        return self._client

    def queue_url(self) -> str:
        if self._url is None:
            self._url = self.client().get_queue_url(QueueName=self.queue)["QueueUrl"]
        return self._url

    def receive(self) -> list[dict[str, Any]]:
        url = self.queue_url()
        messages = (
            self.client()
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_seconds,
                VisibilityTimeout=self.visibility_timeout,
                AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            )
            .get("Messages", [])
        )
        if messages and self._closed.is_set():
            # The poll ended while this call waited: give the messages back at once.
            self.release([m["ReceiptHandle"] for m in messages])
            return []
        return messages

    def delete(self, receipts: Sequence[str]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            response = self.client().delete_message_batch(
                QueueUrl=self.queue_url(), Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            )
            for failure in response.get("Failed", []):
                log.warning(
                    "SQS %s: could not delete a message (%s: %s); it will be delivered again and recognised as seen",
                    self.queue,
                    failure.get("Code"),
                    failure.get("Message"),
                )

    def release(self, receipts: Sequence[str]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            self.client().change_message_visibility_batch(
                QueueUrl=self.queue_url(),
                Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(chunk)],
            )

    # ---- SharedStreamProducer ------------------------------------------------------------------------------
    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.startup_delay > 0:
            await asyncio.sleep(self.startup_delay)
        backoff = 1.0
        while True:
            try:
                messages = await _in_thread(self.receive)
                backoff = 1.0
            except Exception as err:  # noqa: BLE001 - the poll must outlive AWS errors; "yield forever, or raise"
                code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
                if "NonExistentQueue" in str(code) or "QueueDoesNotExist" in str(code):
                    self._url = None if not self.queue.startswith(("https://", "http://")) else self._url
                    log.warning(
                        "SQS queue %r does not exist (yet); create it with `python -m "
                        "release_orchestrator.events setup`; retrying in %.0fs",
                        self.queue,
                        backoff,
                    )
                else:
                    log.warning("Receiving from SQS %s failed (%s); retrying in %.0fs", self.queue, err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            for message in messages:
                yield message, message["ReceiptHandle"]

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        done, kept = [], 0
        for item in batch:
            outcome = item.outcome
            if outcome.is_clean or (outcome.rejected and not outcome.failed):
                done.append(item.broker_payload)
            else:
                kept += 1  # a subscriber failed on it, or nobody was subscribed: SQS delivers it again
        if kept:
            log.info("SQS %s: %d message(s) left for redelivery after the visibility timeout", self.queue, kept)
        if done:
            try:
                await _in_thread(self.delete, done)
            except Exception:  # noqa: BLE001 - raising here would end the poll of every trigger of the queue
                log.exception(
                    "SQS %s: deleting %d handled message(s) failed; they will be delivered again and "
                    "recognised as seen",
                    self.queue,
                    len(done),
                )

    async def aclose(self) -> None:
        self._closed.set()


class SourceEventTrigger(BaseEventTrigger):
    """Fires once per source change event of its watched source that arrives in the queue."""

    def __init__(
        self,
        *,
        provider: str,
        queue: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        repository: str | None = None,
        image_tag: str | None = None,
        branches: list[str] | None = None,
        branches_excluded: list[str] | None = None,
    ):
        super().__init__()
        self.watch_kwargs = {
            "provider": provider,
            "queue": queue,
            "aws_conn_id": aws_conn_id,
            "region_name": region_name,
            "bucket": bucket,
            "key": key,
            "repository": repository,
            "image_tag": image_tag,
            "branches": list(branches or []),
            "branches_excluded": list(branches_excluded or []),
        }
        self.watched = WatchedSource.from_trigger_kwargs(self.watch_kwargs)
        self._seen: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def for_source(cls, source: WatchedSource) -> SourceEventTrigger:
        return cls(**source.trigger_kwargs())

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", dict(self.watch_kwargs)

    # ---- shared stream -------------------------------------------------------------------------------------
    def shared_stream_key(self) -> Hashable | None:
        return ("release-orchestrator-sqs", self.watched.queue, self.watched.aws_conn_id, self.watched.region)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return SqsEventProducer(kwargs["queue"], kwargs.get("aws_conn_id"), kwargs.get("region_name"))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        self.log.info("Watching %s", self.watched.asset_name())
        async for message in shared_stream:
            for event in self.events_for(message):
                yield event

    # ---- without a shared stream (the only consumer of its queue) ------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        producer = self.create_shared_stream_producer(self.watch_kwargs)
        try:
            async for message, receipt in producer.open_stream():
                for event in self.events_for(message):
                    yield event
                await _in_thread(producer.delete, [receipt])
        finally:
            await producer.aclose()

    # ---- matching ------------------------------------------------------------------------------------------
    def events_for(self, message: dict[str, Any]) -> list[TriggerEvent]:
        """One event per change in the message that this trigger watches and has not fired for yet."""
        events = []
        for change, aws_event in changes_in_message(message.get("Body") or ""):
            if not self.watched.matches(change):
                continue
            # A redelivered SQS message keeps its MessageId (EventBridge event ids are not relied on:
            # some emitters reuse them).
            seen_key = f"{message.get('MessageId')}:{describe_change(change)}"
            if seen_key in self._seen:
                self.log.info(
                    "Already fired for %s (event %s): ignoring the redelivery", describe_change(change), seen_key
                )
                continue
            self._remember(seen_key)
            self.log.info("Source change for %s: %s", self.watched.what, describe_change(change))
            events.append(
                TriggerEvent(
                    {
                        "kind": PAYLOAD_KIND,
                        "watched": self.watched.asset_name(),
                        "source": change,
                        "event": aws_event,
                        "sqs": {
                            "queue": self.watched.queue,
                            "message_id": message.get("MessageId"),
                            "sent_timestamp": (message.get("Attributes") or {}).get("SentTimestamp"),
                        },
                    }
                )
            )
        return events

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        while len(self._seen) > REMEMBERED_EVENTS:
            self._seen.popitem(last=False)
