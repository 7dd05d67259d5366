"""Webhook payloads -> the source revision a run receives as conf["source"].

conf["source"] = {provider, repository, branch, tag, commit_id, commit_message, author, author_date, commit_url,
changed_files, pull_request?, event, delivery_id, pushed_by, merged_by?}; `pushed_by` is the account that sent
the event (GitHub's sender, Bitbucket's actor) and `merged_by` who merged a pull request: with `author`, the
people who started the run, whom the approval gate refuses as reviewers of it (gate/policy.py). `pull_request` = {number, action, source_branch,
destination_branch, title, source_repository, from_fork} is there for pull request events only. For a pull
request, `branch` is its source branch (what the run releases) and filters look at its destination branch;
`from_fork` is true unless the source branch is known to live in the repository itself (filters.py refuses
forks unless a trigger says `from_forks: true`).

Every field read is type-checked: a signed payload with a string where an object is expected, or text that is not
valid Unicode, is a PayloadError naming the field (400), never an exception further on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PING, PUSH, PULL_REQUEST = "ping", "push", "pull_request"

# Each provider's event names -> what they are to us; anything else is acknowledged and ignored.
GITHUB_EVENTS = {"ping": PING, "push": PUSH, "pull_request": PULL_REQUEST}
BITBUCKET_EVENTS = {
    "diagnostics:ping": PING,
    "repo:push": PUSH,
    "pullrequest:created": PULL_REQUEST,
    "pullrequest:updated": PULL_REQUEST,
    "pullrequest:fulfilled": PULL_REQUEST,
    "pullrequest:rejected": PULL_REQUEST,
}
# GitHub pull_request actions and Bitbucket pullrequest events -> CodePipeline's pull request events.
GITHUB_PR_ACTIONS = {"opened": "opened", "reopened": "opened", "synchronize": "updated", "closed": "closed"}
BITBUCKET_PR_ACTIONS = {
    "pullrequest:created": "opened",
    "pullrequest:updated": "updated",
    "pullrequest:fulfilled": "closed",
    "pullrequest:rejected": "closed",
}
GENERIC_PR_ACTIONS = ("opened", "updated", "closed")


class PayloadError(ValueError):
    """A missing or malformed field (answered with 400, naming the field)."""

    def __init__(self, field: str, problem: str = "missing"):
        super().__init__(f"{field}: {problem}")
        self.field = field


class Ignored(Exception):
    """A well-formed delivery that starts nothing by design (answered with 202 and the reason)."""


@dataclass
class Event:
    source: dict[str, Any]  # becomes conf["source"]
    files_known: bool = True  # False when the payload does not list changed files


# --- field access -------------------------------------------------------------------------------------------


def get(body: Any, path: str, kind: type | tuple = str, required: bool = True, prefix: str = "") -> Any:
    """body["a"]["b"] for path "a.b"; PayloadError naming the field when required and absent, or mistyped (an
    object on the way included: "a: expected an object, got a string")."""
    value, walked = body, prefix
    for part in path.split("."):
        if value is None:
            break
        if not isinstance(value, dict):
            raise PayloadError(walked.rstrip("."), f"expected an object, got {_type_name(value)}")
        value, walked = value.get(part), walked + part + "."
    if value is None:
        if required:
            raise PayloadError(prefix + path)
        return None
    return checked(value, kind, prefix + path)


def checked(value: Any, kind: type | tuple, field: str) -> Any:
    """`value` if it is of `kind` (and, for text, valid Unicode); PayloadError naming `field` otherwise."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(_TYPE_NAMES[k] for k in names)
        raise PayloadError(field, f"expected {expected}, got {_type_name(value)}")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no database or log can hold it
            raise PayloadError(field, "not valid Unicode text") from None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float):
        return "a number"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object", bool: "true or false"}


def _text(body: Any, path: str, prefix: str = "") -> str:
    """An optional text field: its value, or "" when absent."""
    return get(body, path, required=False, prefix=prefix) or ""


def _strings(body: Any, path: str, prefix: str = "") -> list[str] | None:
    """An optional list of strings (None when absent), each item checked."""
    items = get(body, path, list, required=False, prefix=prefix)
    if items is None:
        return None
    return [checked(item, str, f"{prefix}{path}[{i}]") for i, item in enumerate(items)]


def _objects(body: Any, path: str, required: bool = True, prefix: str = "") -> list[tuple[dict, str]]:
    """A list of objects, each with its field path for messages ("commits[0].")."""
    items = get(body, path, list, required=required, prefix=prefix) or []
    return [(checked(item, dict, f"{prefix}{path}[{i}]"), f"{prefix}{path}[{i}].") for i, item in enumerate(items)]


def from_fork(head_repository: str | None, base_repository: str) -> bool:
    """Whether a pull request's source branch lives outside the repository it targets (unknown: a deleted fork)."""
    return head_repository is None or head_repository.lower() != base_repository.lower()


def event_kind(provider: str, event_name: str | None, body: dict) -> str:
    """PING, PUSH or PULL_REQUEST; raises Ignored for events that start nothing, PayloadError without a name."""
    if provider == "generic":
        name = get(body, "event", required=False) or PUSH
        if name in (PING, PUSH, PULL_REQUEST):
            return name
        raise Ignored(f"event {name!r} starts nothing (expected push or pull_request)")
    header = "X-GitHub-Event" if provider == "github" else "X-Event-Key"
    if not event_name:
        raise PayloadError(header, "missing header")
    kind = (GITHUB_EVENTS if provider == "github" else BITBUCKET_EVENTS).get(event_name)
    if kind is None:
        raise Ignored(f"{provider} event {event_name!r} starts nothing (push and pull request events do)")
    return kind


def repository_of(provider: str, body: dict) -> str | None:
    """The repository a delivery is about ('owner/name'), whose secret signs it; None when the body names none."""
    if provider == "generic":
        return get(body, "repository", required=False)
    return get(body, "repository.full_name", required=False)


# --- GitHub ---------------------------------------------------------------------------------------------------


def github_events(kind: str, event_name: str, body: dict, delivery_id: str) -> list[Event]:
    repository = get(body, "repository.full_name")
    base = {
        "provider": "github",
        "repository": repository,
        "event": kind,
        "delivery_id": delivery_id,
        "pushed_by": _text(body, "sender.login") or _text(body, "pusher.name"),
    }
    html_url = _text(body, "repository.html_url")
    if kind == PUSH:
        return [_github_push(body, base)]
    return [_github_pull_request(body, base, html_url)]


def _github_push(body: dict, base: dict) -> Event:
    ref = get(body, "ref")
    if get(body, "deleted", bool, required=False):
        raise Ignored(f"{ref} was deleted: a deletion starts nothing")
    branch = tag = None
    if ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
    elif ref.startswith("refs/tags/"):
        tag = ref[len("refs/tags/") :]
    else:
        raise Ignored(f"push to {ref}: only branches and tags start pipelines")
    head = get(body, "head_commit", dict, required=False) or {}
    # For an annotated tag, `after` is the tag object; head_commit is the commit it points to.
    commit_id = get(head, "id", required=False, prefix="head_commit.") or get(body, "after")
    changed: list[str] = []
    for commit, p in _objects(body, "commits", required=False):
        for key in ("added", "modified", "removed"):
            for path in _strings(commit, key, prefix=p) or []:
                if path not in changed:
                    changed.append(path)
    h = "head_commit."
    return Event(
        {
            **base,
            "branch": branch,
            "tag": tag,
            "commit_id": commit_id,
            "commit_message": _text(head, "message", h),
            "author": _text(head, "author.name", h) or _text(head, "author.username", h),
            "author_date": _text(head, "timestamp", h),
            "commit_url": _text(head, "url", h),
            "changed_files": changed,
        }
    )


def _github_pull_request(body: dict, base: dict, html_url: str) -> Event:
    action = get(body, "action")
    if action not in GITHUB_PR_ACTIONS:
        raise Ignored(f"pull_request action {action!r} starts nothing (opened, reopened, synchronize and closed do)")
    pr = get(body, "pull_request", dict)
    p = "pull_request."
    commit_id = get(pr, "head.sha", prefix=p)
    source_branch = get(pr, "head.ref", prefix=p)
    # head.repo is null when the fork was deleted; base.repo is the repository the delivery is about.
    head_repository = get(pr, "head.repo.full_name", required=False, prefix=p)
    base_repository = get(pr, "base.repo.full_name", required=False, prefix=p) or base["repository"]
    return Event(
        {
            **base,
            "branch": source_branch,
            "tag": None,
            "commit_id": commit_id,
            "commit_message": _text(pr, "title", p),
            "author": _text(pr, "user.login", p),
            "merged_by": _text(pr, "merged_by.login", p),
            "author_date": _text(pr, "updated_at", p),
            "commit_url": f"{html_url}/commit/{commit_id}" if html_url else "",
            "changed_files": [],
            "pull_request": {
                "number": get(pr, "number", int, prefix=p),
                "action": GITHUB_PR_ACTIONS[action],
                "source_branch": source_branch,
                "destination_branch": get(pr, "base.ref", prefix=p),
                "title": _text(pr, "title", p),
                "source_repository": head_repository,
                "from_fork": from_fork(head_repository, base_repository),
            },
        },
        files_known=False,
    )


# --- Bitbucket ------------------------------------------------------------------------------------------------


def bitbucket_events(kind: str, event_name: str, body: dict, delivery_id: str) -> list[Event]:
    repository = get(body, "repository.full_name")
    base = {
        "provider": "bitbucket",
        "repository": repository,
        "event": kind,
        "delivery_id": delivery_id,
        "pushed_by": _text(body, "actor.nickname") or _text(body, "actor.username"),
    }
    html_url = _text(body, "repository.links.html.href") or f"https://bitbucket.org/{repository}"
    if kind == PUSH:
        return _bitbucket_push(body, base, html_url)
    return [_bitbucket_pull_request(event_name, body, base, html_url)]


def _bitbucket_author(node: dict, prefix: str) -> str:
    """A commit's or pull request's author: the account's display name, else the name as the commit gives it."""
    p = prefix + "author."
    author = get(node, "author", dict, required=False, prefix=prefix) or {}
    return _text(author, "user.display_name", p) or _text(author, "display_name", p) or _text(author, "raw", p)


def _bitbucket_push(body: dict, base: dict, html_url: str) -> list[Event]:
    # One delivery may update several branches and tags: each is a change of its own.
    events = []
    for change, p in _objects(body, "push.changes"):
        new = get(change, "new", dict, required=False, prefix=p)
        if new is None:  # the branch or tag was deleted
            continue
        name = get(new, "name", prefix=p + "new.")
        is_tag = get(new, "type", prefix=p + "new.") in ("tag", "annotated_tag")
        target = get(new, "target", dict, prefix=p + "new.")
        commit_id = get(target, "hash", prefix=p + "new.target.")
        events.append(
            Event(
                {
                    **base,
                    "branch": None if is_tag else name,
                    "tag": name if is_tag else None,
                    "commit_id": commit_id,
                    "commit_message": _text(target, "message", p + "new.target.").strip(),
                    "author": _bitbucket_author(target, p + "new.target."),
                    "author_date": _text(target, "date", p + "new.target."),
                    "commit_url": _text(target, "links.html.href", p + "new.target.")
                    or f"{html_url}/commits/{commit_id}",
                    "changed_files": [],
                },
                files_known=False,
            )
        )
    if not events:
        raise Ignored("the push only deleted branches or tags: a deletion starts nothing")
    return events


def _bitbucket_pull_request(event_name: str, body: dict, base: dict, html_url: str) -> Event:
    pr = get(body, "pullrequest", dict)
    p = "pullrequest."
    commit_id = get(pr, "source.commit.hash", prefix=p)
    source_branch = get(pr, "source.branch.name", prefix=p)
    source_repository = get(pr, "source.repository.full_name", required=False, prefix=p)
    destination = get(pr, "destination.repository.full_name", required=False, prefix=p) or base["repository"]
    return Event(
        {
            **base,
            "branch": source_branch,
            "tag": None,
            "commit_id": commit_id,
            "commit_message": _text(pr, "title", p),
            "author": _bitbucket_author(pr, p),
            "author_date": _text(pr, "updated_on", p),
            "commit_url": f"{html_url}/commits/{commit_id}",
            "changed_files": [],
            "pull_request": {
                "number": get(pr, "id", int, prefix=p),
                "action": BITBUCKET_PR_ACTIONS[event_name],
                "source_branch": source_branch,
                "destination_branch": get(pr, "destination.branch.name", prefix=p),
                "title": _text(pr, "title", p),
                "source_repository": source_repository,
                "from_fork": from_fork(source_repository, destination),
            },
        },
        files_known=False,
    )


# --- generic --------------------------------------------------------------------------------------------------


def generic_events(kind: str, body: dict, delivery_id: str) -> list[Event]:
    """A body already in our terms: {repository, event?, branch | tag, commit_id, ..., changed_files?,
    pull_request?}."""
    source: dict[str, Any] = {
        "provider": "generic",
        "repository": get(body, "repository"),
        "event": kind,
        "delivery_id": delivery_id,
        "commit_id": get(body, "commit_id"),
    }
    for key in ("commit_message", "author", "author_date", "commit_url"):
        source[key] = get(body, key, required=False) or ""
    files = _strings(body, "changed_files")
    source["changed_files"] = list(files or [])
    if kind == PUSH:
        branch, tag = get(body, "branch", required=False), get(body, "tag", required=False)
        if bool(branch) == bool(tag):
            raise PayloadError("branch", "a push needs exactly one of branch and tag")
        source.update(branch=branch, tag=tag)
    else:
        p = "pull_request."
        pr = get(body, "pull_request", dict)
        action = get(pr, "action", prefix=p)
        if action not in GENERIC_PR_ACTIONS:
            raise PayloadError("pull_request.action", f"expected one of {', '.join(GENERIC_PR_ACTIONS)}")
        number = get(pr, "number", int, required=False, prefix=p)
        # The sender says where the source branch lives; left out, it is the repository itself.
        source_repository = get(pr, "source_repository", required=False, prefix=p)
        source.update(
            branch=get(pr, "source_branch", prefix=p),
            tag=None,
            pull_request={
                "number": number,
                "action": action,
                "source_branch": get(pr, "source_branch", prefix=p),
                "destination_branch": get(pr, "destination_branch", prefix=p),
                "title": get(pr, "title", required=False, prefix=p) or "",
                "source_repository": source_repository,
                "from_fork": source_repository is not None and from_fork(source_repository, source["repository"]),
            },
        )
    return [Event(source, files_known=files is not None)]


def parse_events(provider: str, kind: str, event_name: str | None, body: dict, delivery_id: str) -> list[Event]:
    """The changes a push or pull request delivery describes (several for a Bitbucket push of several refs)."""
    if provider == "github":
        return github_events(kind, event_name or "", body, delivery_id)
    if provider == "bitbucket":
        return bitbucket_events(kind, event_name or "", body, delivery_id)
    return generic_events(kind, body, delivery_id)
