"""Webhook payloads -> conf["source"] (GitHub push / pull_request, Bitbucket repo:push / pullrequest:*, generic)."""

from __future__ import annotations

import copy

import pytest

from release_orchestrator.webhooks.payloads import Ignored, PayloadError, event_kind, parse_events, repository_of

SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": "0" * 40,
    "after": SHA,
    "created": False,
    "deleted": False,
    "repository": {"full_name": "acme/webapp", "html_url": "https://github.com/acme/webapp"},
    "pusher": {"name": "octocat"},
    "commits": [
        {"id": "1" * 40, "message": "first", "added": ["src/new.py"], "removed": [], "modified": ["README.md"]},
        {"id": SHA, "message": "Fix all the bugs", "added": [], "removed": ["old.txt"], "modified": ["src/new.py"]},
    ],
    "head_commit": {
        "id": SHA,
        "message": "Fix all the bugs",
        "timestamp": "2024-05-01T10:00:00+02:00",
        "url": f"https://github.com/acme/webapp/commit/{SHA}",
        "author": {"name": "Mona Lisa", "email": "mona@example.com", "username": "mona"},
    },
}

GITHUB_PR = {
    "action": "synchronize",
    "number": 42,
    "repository": {"full_name": "acme/webapp", "html_url": "https://github.com/acme/webapp"},
    "pull_request": {
        "number": 42,
        "title": "Add the thing",
        "user": {"login": "mona"},
        "updated_at": "2024-05-01T08:00:00Z",
        "head": {"ref": "feature/thing", "sha": SHA, "repo": {"full_name": "acme/webapp"}},
        "base": {"ref": "main", "sha": "2" * 40, "repo": {"full_name": "acme/webapp"}},
    },
}

BITBUCKET_PUSH = {
    "actor": {"display_name": "Ada"},
    "repository": {"full_name": "acme/api", "links": {"html": {"href": "https://bitbucket.org/acme/api"}}},
    "push": {
        "changes": [
            {
                "old": None,
                "new": {
                    "type": "branch",
                    "name": "main",
                    "target": {
                        "hash": SHA,
                        "message": "Ship it\n",
                        "date": "2024-05-01T10:00:00+00:00",
                        "author": {"raw": "Ada <ada@example.com>", "user": {"display_name": "Ada Lovelace"}},
                        "links": {"html": {"href": f"https://bitbucket.org/acme/api/commits/{SHA}"}},
                    },
                },
            },
            {"old": {"type": "branch", "name": "gone"}, "new": None},
            {"old": None, "new": {"type": "tag", "name": "v1.0", "target": {"hash": SHA, "message": "Ship it"}}},
        ]
    },
}

BITBUCKET_PR = {
    "repository": {"full_name": "acme/api"},
    "pullrequest": {
        "id": 9,
        "title": "Feature",
        "author": {"display_name": "Ada"},
        "updated_on": "2024-05-01",
        "source": {
            "branch": {"name": "feature/a"},
            "commit": {"hash": "abc123def456"},
            "repository": {"full_name": "acme/api"},
        },
        "destination": {
            "branch": {"name": "main"},
            "commit": {"hash": "fff"},
            "repository": {"full_name": "acme/api"},
        },
    },
}


def test_github_push_branch():
    [event] = parse_events("github", "push", "push", GITHUB_PUSH, "d-1")
    assert event.files_known
    assert event.source == {
        "provider": "github",
        "repository": "acme/webapp",
        "event": "push",
        "delivery_id": "d-1",
        "branch": "main",
        "tag": None,
        "commit_id": SHA,
        "commit_message": "Fix all the bugs",
        "author": "Mona Lisa",
        "author_date": "2024-05-01T10:00:00+02:00",
        "commit_url": f"https://github.com/acme/webapp/commit/{SHA}",
        "changed_files": ["src/new.py", "README.md", "old.txt"],  # added, modified and removed, of every commit
        "pushed_by": "octocat",
    }


def test_who_started_the_run_pusher_and_merger_for_the_approval_gate():
    """gate/policy.py refuses these people as reviewers of the run they started."""
    [push] = parse_events("github", "push", "push", {**GITHUB_PUSH, "sender": {"login": "mona"}}, "d")
    assert push.source["pushed_by"] == "mona"  # the account that pushed, over the pusher's git name
    pull_request = {**GITHUB_PR["pull_request"], "merged": True, "merged_by": {"login": "lead"}}
    merged = {**GITHUB_PR, "action": "closed", "sender": {"login": "lead"}, "pull_request": pull_request}
    [event] = parse_events("github", "pull_request", "pull_request", merged, "d")
    assert (event.source["author"], event.source["merged_by"], event.source["pushed_by"]) == ("mona", "lead", "lead")
    changes = parse_events("bitbucket", "push", "repo:push", {**BITBUCKET_PUSH, "actor": {"nickname": "ada"}}, "d")
    assert {change.source["pushed_by"] for change in changes} == {"ada"}


def test_github_tag_push_uses_the_tagged_commit():
    body = {**GITHUB_PUSH, "ref": "refs/tags/v1.0", "after": "a" * 40, "commits": []}
    [event] = parse_events("github", "push", "push", body, "d")
    assert (event.source["tag"], event.source["branch"], event.source["commit_id"]) == ("v1.0", None, SHA)


def test_github_deletion_and_other_refs_are_ignored():
    with pytest.raises(Ignored, match="deleted"):
        parse_events("github", "push", "push", {**GITHUB_PUSH, "deleted": True, "head_commit": None}, "d")
    with pytest.raises(Ignored, match="only branches and tags"):
        parse_events("github", "push", "push", {**GITHUB_PUSH, "ref": "refs/notes/commits"}, "d")


def test_github_pull_request():
    [event] = parse_events("github", "pull_request", "pull_request", GITHUB_PR, "d")
    assert not event.files_known
    assert event.source["branch"] == "feature/thing"
    assert event.source["commit_id"] == SHA
    assert event.source["commit_url"] == f"https://github.com/acme/webapp/commit/{SHA}"
    assert event.source["pull_request"] == {
        "number": 42,
        "action": "updated",
        "source_branch": "feature/thing",
        "destination_branch": "main",
        "title": "Add the thing",
        "source_repository": "acme/webapp",
        "from_fork": False,
    }


@pytest.mark.parametrize("action,expected", [("opened", "opened"), ("reopened", "opened"), ("closed", "closed")])
def test_github_pull_request_actions(action, expected):
    [event] = parse_events("github", "pull_request", "pull_request", {**GITHUB_PR, "action": action}, "d")
    assert event.source["pull_request"]["action"] == expected


def test_github_pull_request_other_actions_are_ignored():
    with pytest.raises(Ignored, match="'labeled'"):
        parse_events("github", "pull_request", "pull_request", {**GITHUB_PR, "action": "labeled"}, "d")


@pytest.mark.parametrize(
    "path,field",
    [
        (("ref",), "ref"),
        (("repository", "full_name"), "repository.full_name"),
        (("pull_request", "head", "sha"), "pull_request.head.sha"),
    ],
)
def test_missing_fields_are_named(path, field):
    body = copy.deepcopy(GITHUB_PR if path[0] == "pull_request" else GITHUB_PUSH)
    node = body
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    kind = "pull_request" if path[0] == "pull_request" else "push"
    with pytest.raises(PayloadError) as err:
        parse_events("github", kind, kind, body, "d")
    assert err.value.field == field


def test_mistyped_fields_are_named():
    with pytest.raises(PayloadError, match="^ref: expected a string, got an integer$"):
        parse_events("github", "push", "push", {**GITHUB_PUSH, "ref": 5}, "d")


def test_bitbucket_push_one_event_per_updated_ref():
    events = parse_events("bitbucket", "push", "repo:push", BITBUCKET_PUSH, "u-1")
    assert [(e.source["branch"], e.source["tag"]) for e in events] == [("main", None), (None, "v1.0")]
    main = events[0].source
    assert not events[0].files_known
    assert main["author"] == "Ada Lovelace"
    assert main["commit_message"] == "Ship it"
    assert main["commit_url"] == f"https://bitbucket.org/acme/api/commits/{SHA}"
    assert events[1].source["commit_url"] == f"https://bitbucket.org/acme/api/commits/{SHA}"


def test_bitbucket_push_of_deletions_only_is_ignored():
    body = {**BITBUCKET_PUSH, "push": {"changes": [{"old": {"name": "x"}, "new": None}]}}
    with pytest.raises(Ignored):
        parse_events("bitbucket", "push", "repo:push", body, "u")


@pytest.mark.parametrize(
    "key,action",
    [
        ("pullrequest:created", "opened"),
        ("pullrequest:updated", "updated"),
        ("pullrequest:fulfilled", "closed"),
        ("pullrequest:rejected", "closed"),
    ],
)
def test_bitbucket_pull_requests(key, action):
    [event] = parse_events("bitbucket", "pull_request", key, BITBUCKET_PR, "u")
    assert event.source["pull_request"] == {
        "number": 9,
        "action": action,
        "source_branch": "feature/a",
        "destination_branch": "main",
        "title": "Feature",
        "source_repository": "acme/api",
        "from_fork": False,
    }
    assert event.source["commit_id"] == "abc123def456"
    assert event.source["branch"] == "feature/a"


def test_event_kinds():
    assert event_kind("github", "push", {}) == "push"
    assert event_kind("github", "ping", {}) == "ping"
    assert event_kind("bitbucket", "pullrequest:fulfilled", {}) == "pull_request"
    assert event_kind("generic", None, {}) == "push"
    with pytest.raises(Ignored, match="'issues'"):
        event_kind("github", "issues", {})
    with pytest.raises(Ignored, match="'repo:fork'"):
        event_kind("bitbucket", "repo:fork", {})
    with pytest.raises(PayloadError, match="X-GitHub-Event"):
        event_kind("github", None, {})


def test_repository_of():
    assert repository_of("github", GITHUB_PUSH) == "acme/webapp"
    assert repository_of("github", {"zen": "ping from an organization hook"}) is None
    assert repository_of("generic", {"repository": "acme/tool"}) == "acme/tool"


def test_generic_push():
    body = {
        "repository": "acme/tool",
        "branch": "main",
        "commit_id": SHA,
        "commit_message": "m",
        "changed_files": ["a.py"],
    }
    [event] = parse_events("generic", "push", None, body, "g-1")
    assert event.files_known
    assert event.source == {
        "provider": "generic",
        "repository": "acme/tool",
        "event": "push",
        "delivery_id": "g-1",
        "commit_id": SHA,
        "commit_message": "m",
        "author": "",
        "author_date": "",
        "commit_url": "",
        "changed_files": ["a.py"],
        "branch": "main",
        "tag": None,
    }
    [no_files] = parse_events("generic", "push", None, {k: v for k, v in body.items() if k != "changed_files"}, "g")
    assert not no_files.files_known


def test_generic_pull_request():
    body = {
        "repository": "acme/tool",
        "event": "pull_request",
        "commit_id": SHA,
        "pull_request": {"number": 3, "action": "closed", "source_branch": "f", "destination_branch": "main"},
    }
    [event] = parse_events("generic", "pull_request", None, body, "g")
    assert event.source["branch"] == "f"
    assert event.source["pull_request"] == {
        "number": 3,
        "action": "closed",
        "source_branch": "f",
        "destination_branch": "main",
        "title": "",
        "source_repository": None,
        "from_fork": False,
    }


@pytest.mark.parametrize(
    "body,field",
    [
        ({"branch": "main", "commit_id": SHA}, "repository"),
        ({"repository": "a/b", "branch": "main"}, "commit_id"),
        ({"repository": "a/b", "commit_id": SHA}, "branch"),
        ({"repository": "a/b", "commit_id": SHA, "branch": "main", "tag": "v1"}, "branch"),
        ({"repository": "a/b", "commit_id": SHA, "branch": "main", "changed_files": "a.py"}, "changed_files"),
        ({"repository": "a/b", "commit_id": SHA, "branch": "main", "changed_files": [1]}, "changed_files[0]"),
    ],
)
def test_generic_fields(body, field):
    with pytest.raises(PayloadError) as err:
        parse_events("generic", "push", None, body, "g")
    assert err.value.field == field


def test_generic_pull_request_action_is_checked():
    body = {
        "repository": "a/b",
        "event": "pull_request",
        "commit_id": SHA,
        "pull_request": {"action": "merged", "source_branch": "f", "destination_branch": "main"},
    }
    with pytest.raises(PayloadError, match="pull_request.action"):
        parse_events("generic", "pull_request", None, body, "g")


def _with(body: dict, path: tuple, value) -> dict:
    body = copy.deepcopy(body)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "body,head_repository,expected",
    [
        (GITHUB_PR, "acme/webapp", False),
        (GITHUB_PR, "ACME/WebApp", False),  # GitHub keeps the case; compared without it
        (GITHUB_PR, "outsider/webapp", True),
        (GITHUB_PR, None, True),  # head.repo is null when the fork was deleted
    ],
)
def test_github_pull_request_from_a_fork(body, head_repository, expected):
    head = {"full_name": head_repository} if head_repository else None
    [event] = parse_events(
        "github", "pull_request", "pull_request", _with(body, ("pull_request", "head", "repo"), head), "d"
    )
    assert event.source["pull_request"]["from_fork"] is expected
    assert event.source["pull_request"]["source_repository"] == head_repository


def test_github_pull_request_without_a_head_repository_is_from_a_fork():
    body = copy.deepcopy(GITHUB_PR)
    del body["pull_request"]["head"]["repo"]
    del body["pull_request"]["base"]["repo"]  # the delivery's repository is the base
    [event] = parse_events("github", "pull_request", "pull_request", body, "d")
    assert event.source["pull_request"]["from_fork"] is True


@pytest.mark.parametrize("source_repository,expected", [("acme/api", False), ("mallory/api", True), (None, True)])
def test_bitbucket_pull_request_from_a_fork(source_repository, expected):
    repo = {"full_name": source_repository} if source_repository else None
    body = _with(BITBUCKET_PR, ("pullrequest", "source", "repository"), repo)
    [event] = parse_events("bitbucket", "pull_request", "pullrequest:created", body, "u")
    assert event.source["pull_request"]["from_fork"] is expected


def test_generic_pull_request_names_its_source_repository():
    body = {
        "repository": "acme/tool",
        "commit_id": SHA,
        "pull_request": {"action": "opened", "source_branch": "f", "destination_branch": "main"},
    }
    fork = _with(body, ("pull_request", "source_repository"), "someone/tool")
    [event] = parse_events("generic", "pull_request", None, fork, "g")
    assert event.source["pull_request"]["from_fork"] is True
    same = _with(body, ("pull_request", "source_repository"), "acme/tool")
    assert parse_events("generic", "pull_request", None, same, "g")[0].source["pull_request"]["from_fork"] is False


@pytest.mark.parametrize(
    "provider,kind,event,body,path,value,message",
    [
        ("github", "push", "push", GITHUB_PUSH, ("repository",), "x", "repository: expected an object, got a string"),
        ("github", "push", "push", GITHUB_PUSH, ("head_commit",), 5, "head_commit: expected an object, got an integer"),
        (
            "github",
            "push",
            "push",
            GITHUB_PUSH,
            ("head_commit", "author"),
            "x",
            "head_commit.author: expected an object, got a string",
        ),
        ("github", "push", "push", GITHUB_PUSH, ("commits", 1), "x", "commits[1]: expected an object, got a string"),
        (
            "github",
            "push",
            "push",
            GITHUB_PUSH,
            ("commits", 0, "added", 0),
            7,
            "commits[0].added[0]: expected a string, got an integer",
        ),
        ("github", "push", "push", GITHUB_PUSH, ("deleted",), "yes", "deleted: expected true or false, got a string"),
        (
            "github",
            "pull_request",
            "pull_request",
            GITHUB_PR,
            ("pull_request",),
            [],
            "pull_request: expected an object, got a list",
        ),
        (
            "github",
            "pull_request",
            "pull_request",
            GITHUB_PR,
            ("pull_request", "user"),
            "mona",
            "pull_request.user: expected an object, got a string",
        ),
        (
            "github",
            "pull_request",
            "pull_request",
            GITHUB_PR,
            ("pull_request", "head", "repo"),
            "acme/webapp",
            "pull_request.head.repo: expected an object, got a string",
        ),
        (
            "github",
            "pull_request",
            "pull_request",
            GITHUB_PR,
            ("pull_request", "number"),
            4.5,
            "pull_request.number: expected an integer, got a number",
        ),
        (
            "bitbucket",
            "push",
            "repo:push",
            BITBUCKET_PUSH,
            ("push", "changes", 0),
            "main",
            "push.changes[0]: expected an object, got a string",
        ),
        (
            "bitbucket",
            "push",
            "repo:push",
            BITBUCKET_PUSH,
            ("push", "changes", 0, "new", "target", "author"),
            "Ada",
            "push.changes[0].new.target.author: expected an object, got a string",
        ),
        (
            "github",
            "push",
            "push",
            GITHUB_PUSH,
            ("ref",),
            "refs/heads/\ud800",
            "ref: not valid Unicode text",
        ),
    ],
)
def test_type_confused_fields_are_named(provider, kind, event, body, path, value, message):
    with pytest.raises(PayloadError) as err:
        parse_events(provider, kind, event, _with(body, path, value), "d")
    assert str(err.value) == message
