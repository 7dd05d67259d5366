"""Trigger filters, as in CodePipeline V2's git configuration: which pushes and pull requests start a pipeline.

A spec's trigger entry (see docs/triggers.md):

    triggers:
      - provider: github              # github (default), bitbucket or generic: the endpoint that delivers
        repository: acme/webapp       # or source_action: a source action whose configuration names it
        push:                         # one filter, or a list of them (any one matching is enough)
          branches: {includes: [main, "release/*"], excludes: ["release/old-*"]}
          file_paths: {includes: ["src/**"]}
        pull_request:
          events: [opened, updated, closed]
          branches: {includes: [main]}        # the destination branch
          file_paths: {excludes: ["docs/**"]}
        from_forks: false             # pull requests from forks start nothing unless this is true

Excludes win over includes; an empty or missing `includes` lets everything through that is not excluded.
A push filter has either `tags` (it matches tag pushes) or `branches` (branch pushes, optionally narrowed by
`file_paths`). File paths match if at least one changed file (added, modified or removed, in any commit of the
push) is included and not excluded. A pull request whose source branch lives in another repository (a fork, or a
fork since deleted) runs an outsider's code: it is refused before any filter, unless a trigger says
`from_forks: true`.

Kept free of Airflow imports: the spec validator uses validate_triggers at DAG-parse time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from release_orchestrator.events.sources import EVENT_PROVIDERS
from release_orchestrator.events.spec import parse_event_trigger
from release_orchestrator.pipeline.model import Pipeline
from release_orchestrator.pipeline.patterns import Patterns
from release_orchestrator.pipeline.syntax import did_you_mean

PROVIDERS = ("github", "bitbucket", "generic")
PR_EVENTS = ("opened", "updated", "closed")
# CodePipeline's spelling (what the importer writes) and a few near misses mean the same events.
_PR_EVENT_ALIASES = {
    "open": "opened",
    "opened": "opened",
    "reopened": "opened",
    "updated": "updated",
    "update": "updated",
    "closed": "closed",
    "close": "closed",
}
# (provider, event) whose webhook payloads list no changed files, so file_paths cannot be checked.
NO_FILE_LISTS = {("github", "pull_request"), ("bitbucket", "push"), ("bitbucket", "pull_request")}

_TRIGGER_FIELDS = ("provider", "repository", "source_action", "push", "pull_request", "from_forks")
_PUSH_FIELDS = ("branches", "tags", "file_paths")
_PR_FIELDS = ("events", "branches", "file_paths")
_PATTERN_FIELDS = ("includes", "excludes")


# --- the model ----------------------------------------------------------------------------------------------


@dataclass
class PushFilter:
    where: str  # "triggers[0].push" or "triggers[0].push[1]", for messages
    branches: Patterns | None = None
    tags: Patterns | None = None
    file_paths: Patterns | None = None


@dataclass
class PullRequestFilter:
    where: str
    events: tuple[str, ...] = PR_EVENTS
    branches: Patterns | None = None
    file_paths: Patterns | None = None


@dataclass
class Trigger:
    where: str  # "triggers[0]"
    provider: str
    repository: str
    push: list[PushFilter] = field(default_factory=list)
    pull_request: list[PullRequestFilter] = field(default_factory=list)
    from_forks: bool = False  # whether pull requests from forks may start the pipeline


@dataclass
class Match:
    """How one pipeline's triggers judged one change."""

    matched: bool
    by: str | None = None  # the filter that matched, e.g. "triggers[0].push"
    reasons: list[str] = field(default_factory=list)  # why each filter did not match
    refusal: str | None = None  # why the change was refused before any filter (a pull request from a fork)

    @property
    def reason(self) -> str:
        """Why nothing matched, as the receiver's answer says it."""
        return self.refusal or "no filter matched: " + "; ".join(self.reasons)


# --- parsing and validation ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.problems: list[tuple[str, str]] = []  # (field path, message)

    def problem(self, where: str, message: str) -> None:
        self.problems.append((where, message))

    def known_fields(self, node: dict, allowed: tuple, where: str) -> None:
        for key in node:
            if key not in allowed:
                self.problem(
                    f"{where}.{key}",
                    f"unknown field{did_you_mean(str(key), allowed)}; allowed fields: {', '.join(allowed)}",
                )

    def triggers(self) -> list[Trigger]:
        out = []
        for index, node in enumerate(self.pipeline.triggers or []):
            before = len(self.problems)
            trigger = self.trigger(node, f"triggers[{index}]")
            if trigger is not None and len(self.problems) == before:
                out.append(trigger)
        return out

    def trigger(self, node: Any, where: str) -> Trigger | None:
        if isinstance(node, dict) and node.get("provider") in EVENT_PROVIDERS:
            # An event-driven AWS source (release_orchestrator.events): checked here, never matched by webhooks.
            self.problems += parse_event_trigger(self.pipeline, node, where)[1]
            return None
        if not isinstance(node, dict):
            self.problem(where, "expected a mapping with provider, repository, push, pull_request")
            return None
        self.known_fields(node, _TRIGGER_FIELDS, where)
        provider, repository = self.repository(node, where)
        if provider is None:
            return None
        if node.get("push") is None and node.get("pull_request") is None:
            self.problem(where, "a trigger needs push or pull_request filters")
        trigger = Trigger(where=where, provider=provider, repository=repository)
        from_forks = node.get("from_forks")
        if from_forks is not None and not isinstance(from_forks, bool):
            self.problem(f"{where}.from_forks", f"expected true or false, got {from_forks!r}")
        elif from_forks and node.get("pull_request") is None:
            self.problem(f"{where}.from_forks", "only pull requests come from forks: add pull_request filters")
        trigger.from_forks = from_forks is True
        trigger.push = [f for item, w in self.filters(node, "push", where) if (f := self.push_filter(item, w))]
        trigger.pull_request = [
            f for item, w in self.filters(node, "pull_request", where) if (f := self.pr_filter(item, w))
        ]
        for kind, filters in (("push", trigger.push), ("pull_request", trigger.pull_request)):
            for f in filters:
                if (provider, kind) in NO_FILE_LISTS and f.file_paths is not None:
                    self.problem(
                        f"{f.where}.file_paths",
                        f"{provider} {kind} webhooks do not list changed files, so file_paths cannot "
                        f"be checked; remove it (the generic endpoint accepts changed_files)",
                    )
        return trigger

    def repository(self, node: dict, where: str) -> tuple[str | None, str]:
        """(provider, repository), from the trigger itself or from the source action it names."""
        provider = node.get("provider")
        repository = node.get("repository")
        action_name = node.get("source_action")
        if action_name is not None:
            action = next((a for s in self.pipeline.stages for a in s.actions if a.name == action_name), None)
            if action is None:
                names = [a.name for s in self.pipeline.stages for a in s.actions if str(a.type).startswith("source.")]
                self.problem(
                    f"{where}.source_action", f"no action named {action_name!r}{did_you_mean(action_name, names)}"
                )
                return None, ""
            if repository is None:
                repository = (action.configuration or {}).get("repository")
            if provider is None and action.type == "source.github":
                provider = "github"
        provider = "github" if provider is None else provider
        if provider not in PROVIDERS:
            self.problem(
                f"{where}.provider",
                f"expected one of {', '.join(PROVIDERS)}, got {provider!r}{did_you_mean(str(provider), PROVIDERS)}",
            )
            return None, ""
        if repository is None:
            self.problem(
                f"{where}.repository",
                "missing: name the repository ('owner/name') or a source_action whose configuration has one",
            )
            return None, ""
        if not isinstance(repository, str) or not re.fullmatch(r"[^/\s]+/[^/\s]+", repository):
            self.problem(f"{where}.repository", f"expected 'owner/name', got {repository!r}")
            return None, ""
        return provider, repository

    def filters(self, node: dict, key: str, where: str) -> list[tuple[Any, str]]:
        """The filters under push:/pull_request:, a single mapping or a list of them, with their paths."""
        value = node.get(key)
        if value is None:
            return []
        if isinstance(value, dict):
            return [(value, f"{where}.{key}")]
        if isinstance(value, list) and value:
            return [(item, f"{where}.{key}[{i}]") for i, item in enumerate(value)]
        self.problem(f"{where}.{key}", "expected a filter mapping or a non-empty list of them")
        return []

    def push_filter(self, node: Any, where: str) -> PushFilter | None:
        if not isinstance(node, dict):
            self.problem(where, f"expected a mapping with {', '.join(_PUSH_FIELDS)}")
            return None
        self.known_fields(node, _PUSH_FIELDS, where)
        f = PushFilter(where=where, **{k: self.patterns(node[k], f"{where}.{k}") for k in _PUSH_FIELDS if k in node})
        if "tags" in node and ("branches" in node or "file_paths" in node):
            self.problem(
                where,
                "a push filter has either tags (tag pushes) or branches with optional file_paths "
                "(branch pushes); use two filters for both",
            )
        elif "tags" not in node and "branches" not in node:
            self.problem(where, "a push filter needs branches or tags")
        return f

    def pr_filter(self, node: Any, where: str) -> PullRequestFilter | None:
        if not isinstance(node, dict):
            self.problem(where, f"expected a mapping with {', '.join(_PR_FIELDS)}")
            return None
        self.known_fields(node, _PR_FIELDS, where)
        f = PullRequestFilter(
            where=where, **{k: self.patterns(node[k], f"{where}.{k}") for k in ("branches", "file_paths") if k in node}
        )
        if "events" in node:
            f.events = self.events(node["events"], f"{where}.events")
        return f

    def events(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.problem(where, f"expected a non-empty list of {', '.join(PR_EVENTS)}")
            return PR_EVENTS
        out = []
        for i, item in enumerate(value):
            event = _PR_EVENT_ALIASES.get(str(item).lower()) if isinstance(item, str) else None
            if event is None:
                self.problem(
                    f"{where}[{i}]",
                    f"expected one of {', '.join(PR_EVENTS)}, got {item!r}{did_you_mean(str(item), PR_EVENTS)}",
                )
            elif event not in out:
                out.append(event)
        return tuple(out)

    def patterns(self, node: Any, where: str) -> Patterns:
        if not isinstance(node, dict):
            self.problem(where, "expected a mapping with includes and/or excludes (lists of glob patterns)")
            return Patterns()
        before = len(self.problems)
        self.known_fields(node, _PATTERN_FIELDS, where)
        lists = {}
        for key in _PATTERN_FIELDS:
            value = node.get(key)
            if value is None:
                lists[key] = ()
            elif isinstance(value, list) and all(isinstance(p, str) and p for p in value):
                lists[key] = tuple(value)
            else:
                self.problem(f"{where}.{key}", "expected a list of non-empty glob patterns (strings)")
                lists[key] = ()
        if len(self.problems) == before and not lists["includes"] and not lists["excludes"]:
            self.problem(where, "give includes and/or excludes patterns")
        return Patterns(**lists)


def parse_triggers(pipeline: Pipeline) -> tuple[list[Trigger], list[tuple[str, str]]]:
    """The pipeline's valid triggers, and (field, message) for every problem found."""
    parser = _Parser(pipeline)
    triggers = parser.triggers()
    return triggers, parser.problems


def validate_triggers(pipeline: Pipeline) -> list[str]:
    """Every problem in the pipeline's triggers, as "triggers[0].push.branches.includes: message"."""
    return [f"{where}: {message}" for where, message in parse_triggers(pipeline)[1]]


# --- matching -----------------------------------------------------------------------------------------------


def _files_problem(patterns: Patterns, files: list[str] | None, where: str) -> str | None:
    if files is None:
        return f"{where}: the payload lists no changed files"
    if any(patterns.rejects(path) is None for path in files):
        return None
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (
        f"{where}: none of the {len(files)} changed files passes (includes: "
        f"{', '.join(patterns.includes) or 'any'}; excludes: {', '.join(patterns.excludes) or 'none'})"
        + (f": {shown}" if files else "")
    )


def _push_problem(f: PushFilter, source: dict, files: list[str] | None) -> str | None:
    if source.get("tag"):
        if f.tags is None:
            return f"{f.where}: a tag push, and this filter is for branches"
        reason = f.tags.rejects(source["tag"])
        return f"{f.where}.tags: tag {reason}" if reason else None
    if f.branches is None:
        return f"{f.where}: a branch push, and this filter is for tags"
    reason = f.branches.rejects(source.get("branch") or "")
    if reason:
        return f"{f.where}.branches: branch {reason}"
    if f.file_paths is not None:
        return _files_problem(f.file_paths, files, f"{f.where}.file_paths")
    return None


def _pr_problem(f: PullRequestFilter, source: dict, files: list[str] | None) -> str | None:
    pr = source.get("pull_request") or {}
    if pr.get("action") not in f.events:
        return f"{f.where}.events: pull request {pr.get('action')!r} is not one of {', '.join(f.events)}"
    if f.branches is not None:
        reason = f.branches.rejects(pr.get("destination_branch") or "")
        if reason:
            return f"{f.where}.branches: destination branch {reason}"
    if f.file_paths is not None:
        return _files_problem(f.file_paths, files, f"{f.where}.file_paths")
    return None


def concerns(trigger: Trigger, source: dict) -> bool:
    """Whether the trigger watches the repository this change happened in, on the endpoint it came through."""
    return (
        trigger.provider == source.get("provider")
        and trigger.repository.lower() == str(source.get("repository", "")).lower()
    )


def match(triggers: list[Trigger], source: dict, files_known: bool = True) -> Match | None:
    """How `triggers` judge the change in `source` (a run's conf["source"]); None if none watches its repository.

    `files_known` is False when the payload did not list changed files: then file_paths filters do not match.
    """
    watching = [t for t in triggers if concerns(t, source)]
    if not watching:
        return None
    pr = source.get("pull_request") or {}
    if source.get("event") == "pull_request" and pr.get("from_fork"):
        # Checked before the filters: a fork's pull request runs an outsider's commit with the project's setup.
        if not any(t.from_forks for t in watching):
            origin = f"the fork {pr['source_repository']}" if pr.get("source_repository") else "a deleted fork"
            where = ", ".join(t.where for t in watching)
            return Match(False, refusal=f"pull request from {origin}: {where} does not say from_forks: true")
        watching = [t for t in watching if t.from_forks]
    files = list(source.get("changed_files") or []) if files_known else None
    event = source.get("event")
    reasons = []
    for trigger in watching:
        filters = trigger.push if event == "push" else trigger.pull_request
        check = _push_problem if event == "push" else _pr_problem
        if not filters:
            reasons.append(f"{trigger.where}: no {event} filter")
        for f in filters:
            reason = check(f, source, files)
            if reason is None:
                return Match(True, by=f.where)
            reasons.append(reason)
    return Match(False, reasons=reasons)
