"""Route source change events from EventBridge to the SQS queues the pipelines' triggers read.

    python -m release_orchestrator.events setup [spec dirs...] [--region R] [--endpoint-url URL] [--dry-run]

For every queue named by an event-driven trigger (the default `release-source-events` included), in the
region the trigger reads it from: the queue (created if missing), a queue policy letting EventBridge send
to it, and one EventBridge rule per provider on the default event bus whose pattern names the buckets and
object keys / repositories the specs watch, targeting the queue (the triggers still match each change exactly:
tags, branches, and which key belongs to which bucket). Watched buckets get EventBridge notifications
switched on (keeping their other notification settings). Idempotent: run it again after adding a pipeline.

It uses boto3's own credentials (environment, profile, role), not Airflow's connections: it is run once
by whoever administers the AWS account, with permission to manage SQS, EventBridge and the buckets'
notification settings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from release_orchestrator.events.sources import DETAIL_TYPES, WatchedSource

RULE_PREFIX = "release-orchestrator"


@dataclass
class QueueRouting:
    """What one queue in one region must receive."""

    queue: str
    region: str | None
    buckets: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    ecr_repositories: set[str] = field(default_factory=set)
    codecommit_repositories: set[str] = field(default_factory=set)

    def patterns(self) -> dict[str, dict[str, Any]]:
        """provider -> EventBridge event pattern of the changes this queue's triggers watch."""
        out: dict[str, dict[str, Any]] = {}
        if self.buckets:
            out["s3"] = {
                "source": ["aws.s3"],
                "detail-type": [DETAIL_TYPES["s3"]],
                "detail": {"bucket": {"name": sorted(self.buckets)}, "object": {"key": sorted(self.keys)}},
            }
        if self.ecr_repositories:
            out["ecr"] = {
                "source": ["aws.ecr"],
                "detail-type": [DETAIL_TYPES["ecr"]],
                "detail": {
                    "action-type": ["PUSH"],
                    "result": ["SUCCESS"],
                    "repository-name": sorted(self.ecr_repositories),
                },
            }
        if self.codecommit_repositories:
            out["codecommit"] = {
                "source": ["aws.codecommit"],
                "detail-type": [DETAIL_TYPES["codecommit"]],
                "detail": {
                    "event": ["referenceCreated", "referenceUpdated"],
                    "referenceType": ["branch"],
                    "repositoryName": sorted(self.codecommit_repositories),
                },
            }
        return out

    def rule_name(self, provider: str) -> str:
        queue_name = self.queue.rstrip("/").rsplit("/", 1)[-1]
        return f"{RULE_PREFIX}-{queue_name}-{provider}"[:64]


def routing_plan(sources: list[WatchedSource]) -> list[QueueRouting]:
    plan: dict[tuple[str, str | None], QueueRouting] = {}
    for source in sources:
        routing = plan.setdefault((source.queue, source.region), QueueRouting(source.queue, source.region))
        if source.provider == "s3":
            routing.buckets.add(source.bucket or "")
            routing.keys.add(source.key or "")
        elif source.provider == "ecr":
            routing.ecr_repositories.add(source.repository or "")
        else:
            routing.codecommit_repositories.add(source.repository or "")
    return list(plan.values())


def sources_in_specs(directories: list[str]) -> list[WatchedSource]:
    from release_orchestrator.events.spec import watched_sources
    from release_orchestrator.pipeline.loader import load_specs

    pipelines, errors = load_specs(directories)
    for path, error in sorted(errors.items()):
        print(f"skipped (invalid spec): {path}: {str(error).splitlines()[0]}")
    return [source for pipeline in pipelines for source in watched_sources(pipeline)]


ClientFactory = Callable[[str, str | None], Any]


def apply(routing: QueueRouting, client: ClientFactory, say: Callable[[str], None] = print) -> str:
    """Create or update the queue, its policy, the rules and the bucket notifications; returns the queue URL."""
    sqs, events, s3 = client("sqs", routing.region), client("events", routing.region), client("s3", routing.region)
    if routing.queue.startswith(("https://", "http://")):
        url = routing.queue
    else:
        url = sqs.create_queue(QueueName=routing.queue)["QueueUrl"]  # returns the existing queue's URL
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    say(f"queue {arn}")
    rule_arns = []
    for provider, pattern in routing.patterns().items():
        name = routing.rule_name(provider)
        rule_arns.append(
            events.put_rule(
                Name=name,
                EventPattern=json.dumps(pattern),
                State="ENABLED",
                Description="Source changes for release pipelines",
            )["RuleArn"]
        )
        events.put_targets(Rule=name, Targets=[{"Id": "release-source-queue", "Arn": arn}])
        say(f"rule {name}: {json.dumps(pattern['detail'])}")
    if rule_arns:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EventBridgeSourceEvents",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    for bucket in sorted(routing.buckets):
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
        config.pop("ResponseMetadata", None)
        if "EventBridgeConfiguration" not in config:
            config["EventBridgeConfiguration"] = {}
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        say(f"bucket {bucket}: EventBridge notifications on")
    return url


def boto3_clients(endpoint_url: str | None = None, default_region: str | None = None) -> ClientFactory:
    import boto3

    def make(service: str, region: str | None) -> Any:
        return boto3.client(service, region_name=region or default_region, endpoint_url=endpoint_url)

    return make


def main(argv: list[str] | None = None) -> int:
    import argparse

    from release_orchestrator.settings import pipelines_dirs

    parser = argparse.ArgumentParser(
        prog="python -m release_orchestrator.events",
        description="Route CodeCommit, ECR and S3 events to the pipelines' queues.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="create the queues, EventBridge rules and bucket notifications")
    setup.add_argument(
        "dirs", nargs="*", help="spec directories (default: $RELEASE_ORCHESTRATOR_PIPELINES_DIR or include/pipelines)"
    )
    setup.add_argument("--region", help="region of triggers that name none (default: boto3's)")
    setup.add_argument("--endpoint-url", help="an AWS endpoint other than AWS's own (a local sandbox)")
    setup.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)

    plan = routing_plan(sources_in_specs(args.dirs or pipelines_dirs()))
    if not plan:
        print("no pipeline has an event-driven trigger (provider s3, ecr or codecommit): nothing to set up")
        return 0
    grouped: dict[str | None, list[QueueRouting]] = defaultdict(list)
    for routing in plan:
        grouped[routing.region or args.region].append(routing)
    client = boto3_clients(args.endpoint_url, args.region)
    for region, routings in grouped.items():
        for routing in routings:
            routing.region = region
            print(f"[{region or 'default region'}] queue {routing.queue}")
            if args.dry_run:
                for provider, pattern in routing.patterns().items():
                    print(f"  rule {routing.rule_name(provider)}: {json.dumps(pattern)}")
                continue
            apply(routing, client, say=lambda line: print(f"  {line}"))
    return 0
