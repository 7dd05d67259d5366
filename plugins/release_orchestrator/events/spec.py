"""Event-driven trigger entries of a spec: `triggers:` items with `provider: s3 | ecr | codecommit`.

    triggers:
      - provider: s3
        bucket: release-artifacts
        key: webapp/app.zip
      - provider: ecr
        repository: webapp
        image_tag: latest               # default: latest
      - provider: codecommit
        repository: webapp
        branches: [main, "release/*"]   # or {includes: [...], excludes: [...]}
      - provider: s3
        source_action: Artifact         # takes bucket/key (repository/image_tag, repository/branch) from it
        queue: my-events                # default: release-source-events (name or queue URL)
        aws_conn_id: aws_events         # default: the source action's, else the pipeline's
        region: eu-west-1               # default: the source action's, else the pipeline's

Problems are reported as (field path, message), like the git trigger filters. Kept free of Airflow imports.
"""

from __future__ import annotations

import re
from typing import Any

from release_orchestrator import settings
from release_orchestrator.events.sources import EVENT_PROVIDERS, WatchedSource
from release_orchestrator.pipeline.model import Action, Pipeline
from release_orchestrator.pipeline.patterns import Patterns
from release_orchestrator.pipeline.syntax import did_you_mean

_COMMON = ("provider", "source_action", "queue", "aws_conn_id", "region")
FIELDS = {
    "s3": _COMMON + ("bucket", "key"),
    "ecr": _COMMON + ("repository", "image_tag"),
    "codecommit": _COMMON + ("repository", "branches"),
}
# The source action type each provider watches, and which of its configuration keys fill the trigger's fields.
SOURCE_ACTIONS = {
    "s3": ("source.s3", {"bucket": "bucket", "key": "object_key"}),
    "ecr": ("source.ecr", {"repository": "repository", "image_tag": "image_tag"}),
    "codecommit": ("source.codecommit", {"repository": "repository", "branches": "branch"}),
}
# Source action configuration keys written on a trigger by mistake.
_NEAR_MISSES = {("s3", "object_key"): " (did you mean 'key'?)", ("codecommit", "branch"): " (did you mean 'branches'?)"}
REQUIRED = {"s3": ("bucket", "key"), "ecr": ("repository",), "codecommit": ("repository", "branches")}
QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?")
QUEUE_URL_RE = re.compile(r"https?://[^\s/]+/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?")


def is_event_trigger(node: Any) -> bool:
    return isinstance(node, dict) and node.get("provider") in EVENT_PROVIDERS


def parse_event_triggers(pipeline: Pipeline) -> tuple[list[tuple[str, WatchedSource]], list[tuple[str, str]]]:
    """The pipeline's valid event-driven triggers as (where, source), and (field, message) for each problem."""
    found, problems = [], []
    for index, node in enumerate(pipeline.triggers or []):
        if is_event_trigger(node):
            where = f"triggers[{index}]"
            source, errors = parse_event_trigger(pipeline, node, where)
            problems += errors
            if source is not None and not errors:
                found.append((where, source))
    return found, problems


def watched_sources(pipeline: Pipeline) -> list[WatchedSource]:
    """What the pipeline's valid event-driven triggers watch, each once, in spec order."""
    out: list[WatchedSource] = []
    for _, source in parse_event_triggers(pipeline)[0]:
        if source not in out:
            out.append(source)
    return out


def parse_event_trigger(
    pipeline: Pipeline, node: dict, where: str
) -> tuple[WatchedSource | None, list[tuple[str, str]]]:
    provider = node["provider"]
    problems: list[tuple[str, str]] = []
    allowed = FIELDS[provider]
    for key in node:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed) or _NEAR_MISSES.get((provider, key), "")
            problems.append(
                (
                    f"{where}.{key}",
                    f"unknown field for a {provider} trigger{hint}; allowed fields: {', '.join(allowed)}",
                )
            )
    values = {key: node.get(key) for key in allowed if node.get(key) is not None}
    action = _source_action(pipeline, provider, node.get("source_action"), f"{where}.source_action", problems)
    if action is not None:
        for field_name, config_key in SOURCE_ACTIONS[provider][1].items():
            configured = (action.configuration or {}).get(config_key)
            if field_name in values or configured is None:
                continue
            if isinstance(configured, str) and "#{" in configured:
                problems.append(
                    (
                        f"{where}.{field_name}",
                        f"the source action's {config_key} is a reference "
                        f"({configured}); give {field_name} on the trigger",
                    )
                )
                continue
            values[field_name] = [configured] if field_name == "branches" else configured
        if provider == "ecr" and "image_tag" not in values:
            values["image_tag"] = "latest"  # the source action's default
    values.setdefault("aws_conn_id", (action.aws_conn_id if action else None) or pipeline.aws_conn_id)
    values.setdefault("region", (action.region if action else None) or pipeline.region)
    values.setdefault("queue", settings.EVENTS_QUEUE.get())
    if provider == "ecr":
        values.setdefault("image_tag", "latest")

    for field_name in REQUIRED[provider]:
        if field_name not in values and not any(w == f"{where}.{field_name}" for w, _ in problems):
            hint = f" or a source_action of type {SOURCE_ACTIONS[provider][0]}"
            problems.append((f"{where}.{field_name}", f"missing: a {provider} trigger needs {field_name}{hint}"))
    for field_name in ("bucket", "key", "repository", "image_tag", "aws_conn_id", "region", "queue"):
        value = values.get(field_name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append((f"{where}.{field_name}", f"expected a non-empty string, got {value!r}"))
        elif "#{" in value:
            problems.append(
                (
                    f"{where}.{field_name}",
                    "references (#{...}) are resolved when a run starts; a trigger must name what it watches literally",
                )
            )
    queue = values.get("queue")
    if isinstance(queue, str) and not (QUEUE_NAME_RE.fullmatch(queue) or QUEUE_URL_RE.fullmatch(queue)):
        problems.append(
            (
                f"{where}.queue",
                f"expected an SQS queue name (letters, digits, - and _, at most 80) or a queue URL, got {queue!r}",
            )
        )
    branches = Patterns()
    if provider == "codecommit" and "branches" in values:
        branches = _branches(values["branches"], f"{where}.branches", problems)
    if problems:
        return None, problems
    return WatchedSource(
        provider=provider,
        queue=values["queue"],
        aws_conn_id=values["aws_conn_id"],
        region=values["region"],
        bucket=values.get("bucket"),
        key=values.get("key"),
        repository=values.get("repository"),
        image_tag=values.get("image_tag"),
        branches=branches,
    ), []


def _source_action(
    pipeline: Pipeline, provider: str, name: Any, where: str, problems: list[tuple[str, str]]
) -> Action | None:
    if name is None:
        return None
    wanted = SOURCE_ACTIONS[provider][0]
    actions = [a for s in pipeline.stages for a in s.actions]
    action = next((a for a in actions if a.name == name), None)
    if action is None:
        names = [a.name for a in actions if str(a.type).startswith("source.")]
        problems.append((where, f"no action named {name!r}{did_you_mean(str(name), names)}"))
        return None
    if action.type != wanted:
        problems.append(
            (where, f"action {name!r} is a {action.type} action; a {provider} trigger watches a {wanted} action")
        )
        return None
    return action


def _branches(value: Any, where: str, problems: list[tuple[str, str]]) -> Patterns:
    """A list of branch globs (includes), or a mapping with includes and/or excludes."""

    def patterns(items: Any, at: str) -> tuple[str, ...]:
        if items is None:
            return ()
        if isinstance(items, list) and items and all(isinstance(p, str) and p and "#{" not in p for p in items):
            return tuple(items)
        problems.append((at, "expected a non-empty list of branch name glob patterns (strings)"))
        return ()

    if isinstance(value, list):
        return Patterns(includes=patterns(value, where))
    if isinstance(value, dict):
        for key in value:
            if key not in ("includes", "excludes"):
                problems.append(
                    (
                        f"{where}.{key}",
                        f"unknown field{did_you_mean(str(key), ('includes', 'excludes'))}; "
                        f"allowed fields: includes, excludes",
                    )
                )
        result = Patterns(
            includes=patterns(value.get("includes"), f"{where}.includes"),
            excludes=patterns(value.get("excludes"), f"{where}.excludes"),
        )
        if not result.includes and not result.excludes and not any(w.startswith(where) for w, _ in problems):
            problems.append((where, "give includes and/or excludes patterns"))
        return result
    problems.append((where, "expected a list of branch patterns, or a mapping with includes and/or excludes"))
    return Patterns()
