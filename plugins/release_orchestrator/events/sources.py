"""What a pipeline watches, what an SQS message says changed, and whether the two match.

A *change* is a plain dict, shaped like the `conf["source"]` a webhook gives a run:

    {"provider": "s3", "event": "object_created", "bucket": ..., "object_key": ..., "version_id": ..., "etag": ...}
    {"provider": "ecr", "event": "image_push", "repository": ..., "image_tag": ..., "image_digest": ...}
    {"provider": "codecommit", "event": "push", "repository": ..., "branch": ..., "commit_id": ..., "old_commit_id": ...}

each with "event_id", "event_time", "region" and "account" of the AWS event. Messages are read as EventBridge
events (what an EventBridge rule with an SQS target delivers), also when wrapped in an SNS notification, and
as S3 event notifications (a bucket notifying the queue directly).

Kept free of Airflow imports: the spec validator and the compiler use it at DAG-parse time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from release_orchestrator import settings
from release_orchestrator.pipeline.patterns import Patterns

__all__ = ["EVENT_PROVIDERS", "DEFAULT_QUEUE", "WatchedSource", "changes_in_message", "latest_change"]
# Providers of event-driven trigger entries (the git providers are in release_orchestrator.webhooks.filters).
EVENT_PROVIDERS = ("s3", "ecr", "codecommit")
# The queue event-driven triggers read when their spec names none (the EVENTS_QUEUE setting); the
# sandbox creates it, and `python -m release_orchestrator.events setup` creates it in an AWS account.
DEFAULT_QUEUE = settings.EVENTS_QUEUE.default
# Marks the payload of the asset events our trigger creates.
PAYLOAD_KIND = "release-source-event"

S3_DETAIL_TYPE = "Object Created"
ECR_DETAIL_TYPE = "ECR Image Action"
CODECOMMIT_DETAIL_TYPE = "CodeCommit Repository State Change"
DETAIL_TYPES = {"s3": S3_DETAIL_TYPE, "ecr": ECR_DETAIL_TYPE, "codecommit": CODECOMMIT_DETAIL_TYPE}


# --- what a pipeline watches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchedSource:
    """One event-driven trigger entry, resolved: a source, and the queue its events arrive in."""

    provider: str
    queue: str = field(default_factory=settings.EVENTS_QUEUE.get)
    aws_conn_id: str | None = "aws_default"
    region: str | None = None
    bucket: str | None = None  # s3
    key: str | None = None  # s3
    repository: str | None = None  # ecr, codecommit
    image_tag: str | None = None  # ecr
    branches: Patterns = field(default_factory=Patterns)  # codecommit

    def rejects(self, change: dict[str, Any]) -> str | None:
        """Why this change is not one this source watches, or None when it is."""
        if change.get("provider") != self.provider:
            return f"a {change.get('provider')} event, this watches {self.provider}"
        if self.provider == "s3":
            if change.get("bucket") != self.bucket:
                return f"bucket {change.get('bucket')!r} is not {self.bucket!r}"
            if change.get("object_key") != self.key:
                return f"object {change.get('object_key')!r} is not {self.key!r}"
            return None
        if change.get("repository") != self.repository:
            return f"repository {change.get('repository')!r} is not {self.repository!r}"
        if self.provider == "ecr":
            if change.get("image_tag") != self.image_tag:
                return f"image tag {change.get('image_tag')!r} is not {self.image_tag!r}"
            return None
        reason = self.branches.rejects(change.get("branch") or "")
        return f"branch {reason}" if reason else None

    def matches(self, change: dict[str, Any]) -> bool:
        return self.rejects(change) is None

    @property
    def what(self) -> str:
        """The watched source in words: 's3://bucket/key', 'ecr webapp:latest', 'codecommit repo@main,release/*'."""
        if self.provider == "s3":
            return f"s3://{self.bucket}/{self.key}"
        if self.provider == "ecr":
            return f"ecr {self.repository}:{self.image_tag}"
        branches = ",".join(self.branches.includes) or "*"
        if self.branches.excludes:
            branches += "," + ",".join(f"!{p}" for p in self.branches.excludes)
        return f"codecommit {self.repository}@{branches}"

    @property
    def via(self) -> str:
        """Where its events arrive: the queue, and the connection and region when not the defaults."""
        out = f"sqs {self.queue}"
        if self.aws_conn_id not in (None, "aws_default"):
            out += f" conn {self.aws_conn_id}"
        if self.region:
            out += f" region {self.region}"
        return out

    def asset_name(self) -> str:
        return f"{self.what} via {self.via}"

    def asset_uri(self) -> str:
        """A URI naming everything that defines the watcher, so one asset always has one watcher."""
        if self.provider == "s3":
            path = f"s3/{quote(self.bucket or '', safe='')}/{quote(self.key or '', safe='/')}"
        elif self.provider == "ecr":
            path = f"ecr/{quote(self.repository or '', safe='/')}/{quote(self.image_tag or '', safe='')}"
        else:
            path = f"codecommit/{quote(self.repository or '', safe='')}"
        query = [("queue", self.queue), ("conn", self.aws_conn_id or ""), ("region", self.region or "")]
        query += [("branch", p) for p in self.branches.includes] + [("not_branch", p) for p in self.branches.excludes]
        return f"x-release-source://{path}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)

    def trigger_kwargs(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "queue": self.queue,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region,
            "bucket": self.bucket,
            "key": self.key,
            "repository": self.repository,
            "image_tag": self.image_tag,
            "branches": list(self.branches.includes),
            "branches_excluded": list(self.branches.excludes),
        }

    @classmethod
    def from_trigger_kwargs(cls, kwargs: dict[str, Any]) -> WatchedSource:
        return cls(
            provider=kwargs["provider"],
            queue=kwargs["queue"],
            aws_conn_id=kwargs.get("aws_conn_id"),
            region=kwargs.get("region_name"),
            bucket=kwargs.get("bucket"),
            key=kwargs.get("key"),
            repository=kwargs.get("repository"),
            image_tag=kwargs.get("image_tag"),
            branches=Patterns(tuple(kwargs.get("branches") or ()), tuple(kwargs.get("branches_excluded") or ())),
        )


# --- what a message says ------------------------------------------------------------------------------------


def changes_in_message(body: str | bytes | dict) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(change, the AWS event it came from) for every source change an SQS message body reports.

    Anything else (not JSON, another kind of event, a deletion, a failed push) reports no change.
    """
    try:
        document = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return changes_in_message(document["Message"])  # EventBridge -> SNS -> SQS
    if isinstance(document.get("Records"), list):
        return [
            (change, record)
            for record in document["Records"]
            if isinstance(record, dict) and (change := _s3_record_change(record))
        ]
    change = change_in_event(document)
    return [(change, document)] if change else []


def change_in_event(event: dict[str, Any]) -> dict[str, Any] | None:
    """The source change an EventBridge event reports, or None."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    common = {
        "event_id": event.get("id"),
        "event_time": event.get("time"),
        "region": event.get("region"),
        "account": event.get("account"),
    }
    source, detail_type = event.get("source"), event.get("detail-type")
    if source == "aws.s3" and detail_type == S3_DETAIL_TYPE:
        bucket, obj = detail.get("bucket") or {}, detail.get("object") or {}
        if not bucket.get("name") or not obj.get("key"):
            return None
        return {
            "provider": "s3",
            "event": "object_created",
            "bucket": bucket["name"],
            "object_key": obj["key"],
            "version_id": obj.get("version-id"),
            "etag": obj.get("etag") or obj.get("eTag"),
            "size": obj.get("size"),
            **common,
        }
    if source == "aws.ecr" and detail_type == ECR_DETAIL_TYPE:
        if detail.get("action-type") != "PUSH" or detail.get("result") != "SUCCESS":
            return None
        if not detail.get("repository-name") or not detail.get("image-digest"):
            return None
        return {
            "provider": "ecr",
            "event": "image_push",
            "repository": detail["repository-name"],
            "image_tag": detail.get("image-tag"),
            "image_digest": detail["image-digest"],
            **common,
        }
    if source == "aws.codecommit" and detail_type == CODECOMMIT_DETAIL_TYPE:
        if detail.get("event") not in ("referenceCreated", "referenceUpdated"):
            return None  # a deleted branch starts nothing
        if detail.get("referenceType") != "branch" or not detail.get("commitId"):
            return None
        return {
            "provider": "codecommit",
            "event": "push",
            "repository": detail.get("repositoryName"),
            "branch": detail.get("referenceName"),
            "commit_id": detail["commitId"],
            "old_commit_id": detail.get("oldCommitId"),
            "reference_event": detail.get("event"),
            "caller": detail.get("callerUserArn"),
            **common,
        }
    return None


def _s3_record_change(record: dict[str, Any]) -> dict[str, Any] | None:
    """An S3 event notification record (object keys are URL-encoded there)."""
    if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return None
    s3 = record.get("s3") or {}
    bucket, obj = s3.get("bucket") or {}, s3.get("object") or {}
    if not bucket.get("name") or not obj.get("key"):
        return None
    return {
        "provider": "s3",
        "event": "object_created",
        "bucket": bucket["name"],
        "object_key": unquote_plus(obj["key"]),
        "version_id": obj.get("versionId"),
        "etag": obj.get("eTag"),
        "size": obj.get("size"),
        "event_id": obj.get("sequencer"),
        "event_time": record.get("eventTime"),
        "region": record.get("awsRegion"),
        "account": None,
    }


# --- what a run was started with ----------------------------------------------------------------------------


def changes_in_asset_events(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """Every change carried by a run's triggering asset events (context["triggering_asset_events"]), oldest first.

    Reads what our trigger put in the event's extra (`{"payload": {"kind": ..., "event": <EventBridge event>}}`),
    and also an EventBridge event or S3 notification given directly as the extra (an asset event created
    through the REST API, say).
    """
    found: list[tuple[Any, int, dict[str, Any]]] = []
    if not triggering_asset_events:
        return []
    index = 0
    for asset_events in triggering_asset_events.values():
        for asset_event in asset_events:
            extra = getattr(asset_event, "extra", None)
            if extra is None and isinstance(asset_event, dict):
                extra = asset_event.get("extra")
            timestamp = getattr(asset_event, "timestamp", None) or (
                asset_event.get("timestamp") if isinstance(asset_event, dict) else None
            )
            for change in _changes_in_extra(extra or {}):
                found.append((str(timestamp or ""), index, change))
                index += 1
    return [change for _, _, change in sorted(found, key=lambda item: (item[0], item[1]))]


def _changes_in_extra(extra: dict[str, Any]) -> list[dict[str, Any]]:
    payload = extra.get("payload") if isinstance(extra.get("payload"), dict) else extra
    if payload.get("kind") == PAYLOAD_KIND:
        raw = payload.get("event")
        changes = [change for change, _ in changes_in_message(raw)] if isinstance(raw, dict) else []
        return changes or ([payload["source"]] if isinstance(payload.get("source"), dict) else [])
    return [change for change, _ in changes_in_message(payload)]


def latest_change(triggering_asset_events: Any, accepts) -> dict[str, Any] | None:
    """The most recent change in the run's triggering asset events that `accepts(change)` takes."""
    chosen = [change for change in changes_in_asset_events(triggering_asset_events) if accepts(change)]
    return chosen[-1] if chosen else None


def describe_changes(changes: Iterable[dict[str, Any]]) -> str:
    return ", ".join(describe_change(c) for c in changes) or "none"


def describe_change(change: dict[str, Any]) -> str:
    if change.get("provider") == "s3":
        return f"s3://{change.get('bucket')}/{change.get('object_key')} version {change.get('version_id')}"
    if change.get("provider") == "ecr":
        return f"ecr {change.get('repository')}:{change.get('image_tag')} {change.get('image_digest')}"
    return f"codecommit {change.get('repository')}@{change.get('branch')} {change.get('commit_id')}"
