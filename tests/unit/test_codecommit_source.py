"""The CodeCommit source: the sandbox's CodeCommit content API (include/sandbox/codecommit.py) over real HTTP,
read by the source action's hook (branch head, commit, files, history) with an AWS connection pointed at it."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import httpx
import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources
from release_orchestrator.artifacts import location
from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.operators.source import CodeCommitRepository, GitSourceOperator
from tests.unit.conftest import sandbox_client as client
from tests.unit.fakes import FakeTaskInstance, task_context

REPOSITORY = "cc-source-test"
STORE = f"s3://{resources.ARTIFACT_BUCKET}/runs"


@pytest.fixture(scope="module", autouse=True)
def repository(sandbox):
    try:
        client(sandbox, "codecommit").create_repository(repositoryName=REPOSITORY)
    except ClientError as error:  # made by an earlier module's sandbox (moto's state is the process's)
        assert error.response["Error"]["Code"] == "RepositoryNameExistsException"


@pytest.fixture
def aws_conn(sandbox, monkeypatch):
    """aws_default pointing at the sandbox, as the local environment's connection does."""
    extra = {"endpoint_url": sandbox.url, "region_name": resources.REGION}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
    )
    return sandbox


def push(sb, branch: str = "main", **body) -> dict:
    response = httpx.post(
        f"{sb.url}/_sandbox/codecommit/push", json={"repository": REPOSITORY, "branch": branch, **body}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def run_context(conf=None) -> dict:
    ti = FakeTaskInstance()
    ti.run_id = "manual__2026-12-04"
    return {
        **task_context(ti),
        "dag_run": SimpleNamespace(dag_id="cc", run_id=ti.run_id, conf=conf or {}),
        "params": {},
        "triggering_asset_events": {},
        "task": None,
    }


def test_the_sandbox_serves_what_a_push_committed(sandbox):
    codecommit = client(sandbox, "codecommit")
    first = push(sandbox, "content", files={"README.md": "hello\n", "src/app.py": "print(1)\n"}, message="Start")
    second = push(sandbox, "content", files={"src/app.py": "print(2)\n"}, message="Change the app", author="Ana")
    assert (first["event"], second["event"], second["oldCommitId"]) == (
        "referenceCreated",
        "referenceUpdated",
        first["commitId"],
    )
    branch = codecommit.get_branch(repositoryName=REPOSITORY, branchName="content")["branch"]
    assert branch["commitId"] == second["commitId"]
    commit = codecommit.get_commit(repositoryName=REPOSITORY, commitId=second["commitId"])["commit"]
    assert (commit["message"], commit["author"]["name"], commit["parents"]) == (
        "Change the app\n",
        "Ana",
        [first["commitId"]],
    )
    root = codecommit.get_folder(repositoryName=REPOSITORY, commitSpecifier="content", folderPath="/")
    assert [f["absolutePath"] for f in root["files"]] == ["README.md"]
    assert [f["absolutePath"] for f in root["subFolders"]] == ["src"]
    at_first = codecommit.get_file(repositoryName=REPOSITORY, commitSpecifier=first["commitId"], filePath="src/app.py")
    assert at_first["fileContent"] == b"print(1)\n"
    changed = codecommit.get_differences(
        repositoryName=REPOSITORY, beforeCommitSpecifier=first["commitId"], afterCommitSpecifier=second["commitId"]
    )["differences"]
    assert [(d["changeType"], d["afterBlob"]["path"]) for d in changed] == [("M", "src/app.py")]
    # CodeCommit's errors, by name.
    with pytest.raises(ClientError, match="BranchDoesNotExistException"):
        codecommit.get_branch(repositoryName=REPOSITORY, branchName="nope")
    with pytest.raises(ClientError, match="FileDoesNotExistException"):
        codecommit.get_file(repositoryName=REPOSITORY, commitSpecifier="content", filePath="missing.txt")
    with pytest.raises(ClientError, match="RepositoryDoesNotExistException"):
        codecommit.get_branch(repositoryName="not-there", branchName="main")


def test_a_codecommit_source_releases_the_branch_head_and_stores_its_files(aws_conn):
    push(aws_conn, "release/1", files={"buildspec.yml": "version: 0.2\n", "web/app.py": "v1\n"}, message="One")
    head = push(aws_conn, "release/1", files={"web/app.py": "v2\n"}, message="Two\n\nbody", author="Bo")
    op = GitSourceOperator(
        task_id="Checkout",
        repository=REPOSITORY,
        branch="release/1",
        provider="codecommit",
        artifacts={
            "store": STORE,
            "region": resources.REGION,
            "aws_conn_id": "aws_default",
            "inputs": [],
            "outputs": [{"name": "SourceCode"}],
        },
    )
    context = run_context()
    outputs = op.execute(context)  # no revision named: the branch's head
    assert (outputs["CommitId"], outputs["CommitMessage"], outputs["AuthorDisplayName"]) == (
        head["commitId"],
        "Two\n\nbody",
        "Bo",
    )
    assert outputs["AuthorDate"].endswith("Z") and outputs["RepositoryName"] == REPOSITORY
    assert outputs["CommitUrl"].endswith(f"/repositories/{REPOSITORY}/commit/{head['commitId']}?region=us-east-1")
    where = location(STORE, "cc", context["dag_run"].run_id, "SourceCode")
    body = client(aws_conn, "s3").get_object(Bucket=where.bucket, Key=where.key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == {
            "buildspec.yml": b"version: 0.2\n",
            "web/app.py": b"v2\n",
        }

    # A push event's commit wins over the head; an unknown commit is an error naming the call and the commit.
    first = client(aws_conn, "codecommit").get_commit(repositoryName=REPOSITORY, commitId=head["oldCommitId"])
    named = op.execute(run_context(conf={"source": {"commit_id": head["oldCommitId"]}}))
    assert (named["CommitId"], named["CommitMessage"]) == (head["oldCommitId"], first["commit"]["message"].strip())
    with pytest.raises(AwsCallError, match=f"GetCommit on commit {'e' * 40} of codecommit repository"):
        op.execute(run_context(conf={"source": {"commit_id": "e" * 40}}))
    with pytest.raises(ValueError, match="a run cannot fetch another repository's files"):
        op.execute(run_context(conf={"source": {"commit_id": "e" * 40, "repository": "other"}}))


def test_the_commits_since_the_last_release_follow_first_parents_newest_first(aws_conn, monkeypatch):
    released = push(aws_conn, "history", files={"a": "0"}, message="released")["commitId"]
    later = [push(aws_conn, "history", files={"a": str(i)}, message=f"fix {i}")["commitId"] for i in range(3)]
    repository = CodeCommitRepository("aws_default", resources.REGION, REPOSITORY)
    assert repository.since(released, later[-1]) == [
        f"{sha[:7]} fix {i} (Demo Author)" for i, sha in reversed(list(enumerate(later)))
    ]
    # A base further back than a message lists (or not an ancestor): the list says there is more.
    monkeypatch.setattr("release_orchestrator.operators.source.RELEASE_NOTES_MAX_COMMITS", 2)
    assert repository.since(released, later[-1])[-1] == "... and earlier commits"
    assert len(repository.since(released, later[-1])) == 3
    monkeypatch.setattr("release_orchestrator.operators.source.RELEASE_NOTES_MAX_COMMITS", 50)
    elsewhere = push(aws_conn, "elsewhere", files={"b": "1"}, message="on another branch")["commitId"]
    assert repository.since(elsewhere, later[-1])[-1] == (
        f"(the last release, {elsewhere[:7]}, is not in this branch's history)"
    )
