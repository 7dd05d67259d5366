"""The least-privilege IAM policy of a pipeline: what its actions' operators call, on the resources it names.

Each action type declares its permissions in the registry (`ActionType.permissions`: service, IAM actions, an
ARN with `{region}` and `{account}`, and a statement id saying why). This module fills in the region (the
action's, else the pipeline's, else `--region`) and the account (`--account-id`, else the one account the
spec's ARNs name), writes `*` for the parts of a name given as a `#{...}` reference, adds sns:Publish on the
notifications topic, reading the queue of event-driven triggers and, for a spec with `preflight: true`, the
read calls of its Preflight.Check task (declared next to each checker in pipeline/preflight.py), and merges
permissions with the same statement id into one statement, statements of a service together. `*` as a whole
resource appears only where a call cannot be scoped to a resource the spec names; the statement id says why.
"""

from __future__ import annotations

import json
import re
from typing import Any

from release_orchestrator.events.spec import watched_sources

from .action_types import ACTION_TYPES, Permission, topic_permission
from .artifacts import artifact_permissions
from .conditions import entry_rule_permissions
from .files import is_file_path, spec_file
from .model import Pipeline
from .preflight import check_permissions, plan
from .syntax import REFERENCE_RE

POLICY_VERSION = "2012-10-17"
_ACCOUNT_IN_ARN_RE = re.compile(r"^arn:aws[\w-]*:[\w-]+:[\w-]*:(\d{12}):")


class PolicyInputError(ValueError):
    """The policy cannot be written from what the spec and the options give (e.g. no account id)."""


def spec_account(pipeline: Pipeline) -> str | None:
    """The one account id the spec's ARNs name; None when they name none; an error when several."""
    arns: list[str] = []
    if pipeline.notifications and isinstance(pipeline.notifications.topic_arn, str):
        arns.append(pipeline.notifications.topic_arn)

    def walk(value: Any) -> None:
        if isinstance(value, str):
            arns.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for stage in pipeline.stages:
        for action in stage.actions:
            walk(action.configuration)
    accounts = sorted({m.group(1) for arn in arns if (m := _ACCOUNT_IN_ARN_RE.match(arn))})
    if len(accounts) > 1:
        raise PolicyInputError(f"the spec's ARNs name accounts {', '.join(accounts)}: give --account-id")
    return accounts[0] if accounts else None


def _with_files(pipeline: Pipeline, action_type: Any, configuration: dict[str, Any]) -> dict[str, Any]:
    """The configuration with each file a spec names (an ECS task definition) read, where it can be."""
    config = dict(configuration)
    for key in action_type.file_keys:
        if is_file_path(config.get(key)):
            try:
                config[key] = json.loads(spec_file(config[key], pipeline.source_file).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config[key] = None  # validate reports it; the policy then lacks the roles the file names
    return config


def permissions(pipeline: Pipeline, account_id: str | None = None, region: str | None = None) -> list[Permission]:
    """Every permission the pipeline's actions need, with region, account and references filled in."""
    account = account_id or spec_account(pipeline)
    if not account:
        raise PolicyInputError("the spec names no account id in an ARN: give --account-id")
    out: list[Permission] = []

    def add(permission: Permission, action_region: str | None) -> None:
        resource = permission.resource.replace("{account}", account).replace("{region}", action_region or "*")
        sid = permission.sid
        if REFERENCE_RE.search(resource):
            resource, sid = REFERENCE_RE.sub("*", resource), sid + "NamedByAReference"
        out.append(Permission(permission.service, permission.actions, resource, sid, permission.condition))

    for stage in pipeline.stages:
        for rule, permission in entry_rule_permissions(stage):
            add(permission, rule.region or pipeline.region or region)
        for action in stage.actions:
            action_type = ACTION_TYPES.get(action.type)
            if action_type is None or action_type.permissions is None:
                continue
            config = _with_files(pipeline, action_type, action_type.with_defaults(action.configuration))
            for permission in action_type.permissions(config):
                add(permission, action.region or pipeline.region or region)
            for permission in artifact_permissions(pipeline, action):
                add(permission, action.region or pipeline.region or region)
    if pipeline.notifications and pipeline.notifications.topic_arn:
        add(topic_permission(pipeline.notifications.topic_arn), pipeline.region or region)
    if pipeline.preflight:  # the Preflight.Check task looks up what the actions name, in their regions
        for check in plan(pipeline, region=region):
            for permission in check_permissions(check):
                add(permission, check.region)
    for source in watched_sources(pipeline):  # event-driven triggers: the triggerer reads their queue
        queue = source.queue.rstrip("/").rsplit("/", 1)[-1]  # a name or a queue URL
        add(
            Permission(
                "sqs",
                ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"),
                f"arn:aws:sqs:{{region}}:{{account}}:{queue}",
                "SqsReadTheEventTriggersQueue",
            ),
            source.region or pipeline.region or region,
        )
    return out


def policy(pipeline: Pipeline, account_id: str | None = None, region: str | None = None) -> dict[str, Any]:
    """The IAM policy document: one statement per statement id, statements of a service together."""
    merged: dict[tuple, tuple[Permission, set[str]]] = {}
    for p in permissions(pipeline, account_id, region):
        key = (p.service, p.sid, p.actions, json.dumps(p.condition, sort_keys=True))
        merged.setdefault(key, (p, set()))[1].add(p.resource)
    statements = []
    used_sids: dict[str, int] = {}
    for (_service, sid, actions, _), (p, resources) in sorted(merged.items(), key=lambda item: item[0][:2]):
        used_sids[sid] = used_sids.get(sid, 0) + 1
        statement: dict[str, Any] = {
            "Sid": sid if used_sids[sid] == 1 else f"{sid}{used_sids[sid]}",
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": "*" if "*" in resources else sorted(resources),
        }
        if p.condition:
            statement["Condition"] = p.condition
        statements.append(statement)
    return {"Version": POLICY_VERSION, "Statement": statements}


def policy_json(pipeline: Pipeline, account_id: str | None = None, region: str | None = None) -> str:
    return json.dumps(policy(pipeline, account_id, region), indent=2) + "\n"
