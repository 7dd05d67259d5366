"""Trigger filters: spec validation (validate_triggers) and matching, as CodePipeline V2's git configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from release_orchestrator.pipeline.model import Action, Pipeline, Stage
from release_orchestrator.pipeline.patterns import glob_match
from release_orchestrator.webhooks.filters import match, parse_triggers, validate_triggers


def pipeline(*triggers: dict) -> Pipeline:
    checkout = Action(
        name="Checkout", type="source.github", configuration={"repository": "acme/webapp", "branch": "main"}
    )
    return Pipeline(name="p", stages=[Stage(name="Source", actions=[checkout])], triggers=list(triggers))


def push(
    branch: str | None = "main",
    tag: str | None = None,
    files=("src/app.py",),
    repository="acme/webapp",
    provider="github",
) -> dict:
    return {
        "provider": provider,
        "repository": repository,
        "event": "push",
        "branch": None if tag else branch,
        "tag": tag,
        "commit_id": "c0ffee",
        "changed_files": list(files),
    }


def pull_request(action="opened", destination="main", provider="github", files=(), fork=None) -> dict:
    return {
        "provider": provider,
        "repository": "acme/webapp",
        "event": "pull_request",
        "branch": "feature/x",
        "tag": None,
        "commit_id": "c0ffee",
        "changed_files": list(files),
        "pull_request": {
            "number": 7,
            "action": action,
            "source_branch": "feature/x",
            "destination_branch": destination,
            "title": "t",
            "source_repository": fork or "acme/webapp",
            "from_fork": fork is not None,
        },
    }


def judge(trigger: dict, source: dict, files_known: bool = True):
    triggers, problems = parse_triggers(pipeline(trigger))
    assert problems == []
    return match(triggers, source, files_known)


@pytest.mark.parametrize(
    "pattern,value,expected",
    [
        ("main", "main", True),
        ("main", "main2", False),
        ("release/*", "release/1.0", True),
        ("release/*", "release/1.0/hotfix", False),
        ("release/**", "release/1.0/hotfix", True),
        ("feature-?", "feature-a", True),
        ("v[0-9]*", "v1.2", True),
        ("v[!0-9]*", "v1.2", False),
        ("**/*.py", "app.py", True),
        ("**/*.py", "src/deep/app.py", True),
        ("src/**", "src/a/b.txt", True),
        ("*.md", "docs/readme.md", False),
        ("docs/*.md", "docs/readme.md", True),
        ("a.b", "axb", False),  # dots are literal
    ],
)
def test_glob(pattern, value, expected):
    assert glob_match(pattern, value) is expected


def test_branch_includes_and_excludes_win():
    trigger = {
        "provider": "github",
        "repository": "acme/webapp",
        "push": {"branches": {"includes": ["main", "release/*"], "excludes": ["release/old-*"]}},
    }
    assert judge(trigger, push("main")).matched
    assert judge(trigger, push("release/2.0")).matched
    result = judge(trigger, push("release/old-1"))
    assert not result.matched
    assert result.reasons == ["triggers[0].push.branches: branch 'release/old-1' is excluded by 'release/old-*'"]
    result = judge(trigger, push("dev"))
    assert "matches none of the includes (main, release/*)" in result.reasons[0]


def test_excludes_only_lets_everything_else_through():
    trigger = {"repository": "acme/webapp", "push": {"branches": {"excludes": ["wip/**"]}}}
    assert judge(trigger, push("anything")).matched
    assert not judge(trigger, push("wip/a/b")).matched


def test_tag_filters_match_tag_pushes_only():
    trigger = {"repository": "acme/webapp", "push": {"tags": {"includes": ["v*"], "excludes": ["v*-rc*"]}}}
    assert judge(trigger, push(tag="v1.2.0")).matched
    assert not judge(trigger, push(tag="v1.3.0-rc1")).matched
    branch_push = judge(trigger, push("v1"))
    assert branch_push.reasons == ["triggers[0].push: a branch push, and this filter is for tags"]
    branch_trigger = {"repository": "acme/webapp", "push": {"branches": {"includes": ["**"]}}}
    assert judge(branch_trigger, push(tag="v1")).reasons == [
        "triggers[0].push: a tag push, and this filter is for branches"
    ]


def test_file_paths_any_changed_file_included_and_not_excluded():
    trigger = {
        "repository": "acme/webapp",
        "push": {
            "branches": {"includes": ["main"]},
            "file_paths": {"includes": ["src/**"], "excludes": ["src/**/*.md"]},
        },
    }
    assert judge(trigger, push(files=["README.md", "src/app.py"])).matched
    assert not judge(trigger, push(files=["src/docs/guide.md"])).matched
    result = judge(trigger, push(files=["README.md"]))
    assert result.reasons[0].startswith("triggers[0].push.file_paths: none of the 1 changed files passes")
    assert not judge(trigger, push(files=[])).matched
    assert judge(trigger, push(files=["src/a.py"]), files_known=False).reasons == [
        "triggers[0].push.file_paths: the payload lists no changed files"
    ]


def test_several_filters_any_one_matches_and_reasons_name_each():
    trigger = {
        "repository": "acme/webapp",
        "push": [{"branches": {"includes": ["main"]}}, {"tags": {"includes": ["v*"]}}],
    }
    assert judge(trigger, push(tag="v2")).by == "triggers[0].push[1]"
    assert judge(trigger, push("main")).by == "triggers[0].push[0]"
    result = judge(trigger, push("dev"))
    assert [r.split(":")[0] for r in result.reasons] == ["triggers[0].push[0].branches", "triggers[0].push[1]"]


def test_pull_request_events_and_destination_branch():
    trigger = {
        "provider": "generic",
        "repository": "acme/webapp",
        "pull_request": {
            "events": ["OPEN", "updated"],
            "branches": {"includes": ["main"]},
            "file_paths": {"includes": ["src/**"]},
        },
    }
    assert judge(trigger, pull_request("opened", provider="generic", files=["src/a.py"])).matched
    assert judge(trigger, pull_request("updated", provider="generic", files=["src/a.py"])).matched
    closed = judge(trigger, pull_request("closed", provider="generic", files=["src/a.py"]))
    assert closed.reasons == ["triggers[0].pull_request.events: pull request 'closed' is not one of opened, updated"]
    other = judge(trigger, pull_request("opened", destination="dev", provider="generic", files=["src/a.py"]))
    assert other.reasons[0].startswith("triggers[0].pull_request.branches: destination branch 'dev'")
    assert not judge(trigger, pull_request("opened", provider="generic", files=["docs/a.md"])).matched


def test_pull_request_events_default_to_all():
    trigger = {"repository": "acme/webapp", "pull_request": {"branches": {"includes": ["main"]}}}
    for action in ("opened", "updated", "closed"):
        assert judge(trigger, pull_request(action)).matched


def test_push_and_pull_request_filters_do_not_cross():
    only_push = {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}}
    assert judge(only_push, pull_request()).reasons == ["triggers[0]: no pull_request filter"]


def test_other_repositories_and_providers_are_not_concerned():
    trigger = {"provider": "github", "repository": "Acme/WebApp", "push": {"branches": {"includes": ["main"]}}}
    assert judge(trigger, push(repository="acme/webapp")).matched  # GitHub names ignore case
    assert judge(trigger, push(repository="acme/other")) is None
    assert judge(trigger, push(provider="bitbucket")) is None


def test_source_action_gives_provider_and_repository():
    trigger = {"source_action": "Checkout", "push": [{"branches": {"includes": ["main"]}}]}
    triggers, problems = parse_triggers(pipeline(trigger))
    assert problems == []
    assert (triggers[0].provider, triggers[0].repository) == ("github", "acme/webapp")


@pytest.mark.parametrize(
    "trigger,message",
    [
        (
            {"repository": "acme/webapp", "push": {"branches": {"includes": "main"}}},
            "triggers[0].push.branches.includes: expected a list of non-empty glob patterns (strings)",
        ),
        (
            {"repository": "acme/webapp", "push": {"branches": {"include": ["main"]}}},
            "triggers[0].push.branches.include: unknown field (did you mean 'includes'?); allowed fields: includes, excludes",
        ),
        (
            {"repository": "acme/webapp", "push": {"branches": {}}},
            "triggers[0].push.branches: give includes and/or excludes patterns",
        ),
        (
            {"repository": "acme/webapp", "push": {"tags": {"includes": ["v*"]}, "branches": {"includes": ["main"]}}},
            "triggers[0].push: a push filter has either tags (tag pushes) or branches with optional file_paths "
            "(branch pushes); use two filters for both",
        ),
        (
            {"repository": "acme/webapp", "push": {"file_paths": {"includes": ["src/**"]}}},
            "triggers[0].push: a push filter needs branches or tags",
        ),
        (
            {"repository": "acme/webapp", "pull_request": {"events": ["merged"]}},
            "triggers[0].pull_request.events[0]: expected one of opened, updated, closed, got 'merged'",
        ),
        (
            {"provider": "gitlab", "repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}},
            "triggers[0].provider: expected one of github, bitbucket, generic, got 'gitlab' (did you mean 'github'?)",
        ),
        (
            {"repository": "webapp", "push": {"branches": {"includes": ["main"]}}},
            "triggers[0].repository: expected 'owner/name', got 'webapp'",
        ),
        (
            {"source_action": "Checkuot", "push": {"branches": {"includes": ["main"]}}},
            "triggers[0].source_action: no action named 'Checkuot' (did you mean 'Checkout'?)",
        ),
        ({"repository": "acme/webapp"}, "triggers[0]: a trigger needs push or pull_request filters"),
        (
            {"repository": "acme/webapp", "pull_request": {"events": ["opened"]}, "from_forks": "yes"},
            "triggers[0].from_forks: expected true or false, got 'yes'",
        ),
        (
            {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}, "from_forks": True},
            "triggers[0].from_forks: only pull requests come from forks: add pull_request filters",
        ),
        (
            {"repository": "acme/webapp", "branch": "main", "push": {"branches": {"includes": ["main"]}}},
            "triggers[0].branch: unknown field; allowed fields: provider, repository, source_action, push, "
            "pull_request, from_forks",
        ),
        (
            {
                "provider": "bitbucket",
                "repository": "acme/webapp",
                "push": {"branches": {"includes": ["main"]}, "file_paths": {"includes": ["src/**"]}},
            },
            "triggers[0].push.file_paths: bitbucket push webhooks do not list changed files, so file_paths cannot be "
            "checked; remove it (the generic endpoint accepts changed_files)",
        ),
        (
            {
                "provider": "github",
                "repository": "acme/webapp",
                "pull_request": {"file_paths": {"includes": ["src/**"]}},
            },
            "triggers[0].pull_request.file_paths: github pull_request webhooks do not list changed files, so file_paths "
            "cannot be checked; remove it (the generic endpoint accepts changed_files)",
        ),
    ],
)
def test_validate_triggers_names_the_field(trigger, message):
    assert validate_triggers(pipeline(trigger)) == [message]


def test_valid_triggers_have_no_problems_and_invalid_ones_are_left_out():
    good = {
        "provider": "github",
        "repository": "acme/webapp",
        "push": [
            {"branches": {"includes": ["main"]}, "file_paths": {"excludes": ["docs/**"]}},
            {"tags": {"includes": ["v*"]}},
        ],
        "pull_request": {"events": ["opened", "closed"], "branches": {"includes": ["main"]}},
    }
    bad = {"repository": "acme/webapp", "push": {"branches": {"includes": [1]}}}
    assert validate_triggers(pipeline(good)) == []
    triggers, problems = parse_triggers(pipeline(good, bad))
    assert [t.where for t in triggers] == ["triggers[0]"]
    assert [where for where, _ in problems] == ["triggers[1].push.branches.includes"]


def test_the_example_and_test_specs_have_valid_triggers(monkeypatch):
    from release_orchestrator.pipeline.loader import load_specs
    from tests.integration.helpers import APPROVAL_TIMEOUT_MIN_SECONDS

    # As the integration environment loads them (ap-timeout.yaml's approval times out in seconds).
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_APPROVAL_TIMEOUT_MIN_SECONDS", str(APPROVAL_TIMEOUT_MIN_SECONDS))

    root = Path(__file__).resolve().parents[2]
    pipelines, errors = load_specs([root / "include" / "pipelines", root / "tests" / "integration" / "pipelines"])
    # zz-broken-spec.yaml and zz-misnamed-artifact.yaml are invalid on purpose (the import-error test); every
    # other spec loads.
    assert sorted(Path(path).name for path in errors) == ["zz-broken-spec.yaml", "zz-misnamed-artifact.yaml"]
    for p in pipelines:
        assert validate_triggers(p) == [], p.name
    example = next(p for p in pipelines if p.name == "webapp-release")
    triggers, _ = parse_triggers(example)
    assert match(triggers, push("main")).matched
    assert not match(triggers, push("dev")).matched


PR_TRIGGER = {"repository": "acme/webapp", "pull_request": {"branches": {"includes": ["main"]}}}


def test_pull_requests_from_forks_are_refused_before_the_filters():
    refused = judge(PR_TRIGGER, pull_request(fork="outsider/webapp"))
    assert not refused.matched
    assert refused.reason == "pull request from the fork outsider/webapp: triggers[0] does not say from_forks: true"
    deleted = judge(PR_TRIGGER, {**pull_request(fork="x/y"), "pull_request": {"from_fork": True, "action": "opened"}})
    assert deleted.reason == "pull request from a deleted fork: triggers[0] does not say from_forks: true"
    assert judge(PR_TRIGGER, pull_request()).matched  # the repository's own branch


def test_from_forks_lets_forks_through_to_the_filters():
    trigger = {**PR_TRIGGER, "from_forks": True}
    assert judge(trigger, pull_request(fork="outsider/webapp")).matched
    other_branch = judge(trigger, pull_request(fork="outsider/webapp", destination="dev"))
    assert other_branch.reason.startswith("no filter matched: triggers[0].pull_request.branches")


def test_only_triggers_that_allow_forks_judge_a_forks_pull_request():
    strict = {"repository": "acme/webapp", "pull_request": {"branches": {"includes": ["dev"]}}}
    lenient = {**PR_TRIGGER, "from_forks": True}
    triggers, problems = parse_triggers(pipeline(strict, lenient))
    assert problems == []
    result = match(triggers, pull_request(fork="outsider/webapp"))
    assert result.matched and result.by == "triggers[1].pull_request"
    assert not match(triggers, pull_request(fork="outsider/webapp", destination="dev")).matched
