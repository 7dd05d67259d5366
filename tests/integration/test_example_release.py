"""The example release (include/pipelines/webapp-release.yaml) in real Airflow processes on the sandbox."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile

import httpx
import pytest

from include.localenv.webhook_client import push_commit
from include.sandbox import resources
from include.sandbox.client import SandboxClient
from tests.integration.helpers import (
    aws_client,
    ti_states,
    wait_for_run,
    wait_for_task_state,
)

pytestmark = pytest.mark.integration

PIPELINE = "webapp-release"
APPROVAL = "Approval.QALeadSignOff"
DEPLOY_TASKS = {"Deploy.EC2", "Deploy.ECS", "Deploy.Lambda"}
# QUEUED: each stage starts with its door (docs/pipeline-spec.md#execution-modes).
DOORS = {f"{stage}.Enter" for stage in ("Source", "Build", "Test", "Approval", "Deploy")}


def push(env, label: str) -> dict:
    """A developer's push: a commit on the sandbox's GitHub (the source action fetches its files from there),
    and the run conf a push webhook would give."""
    pushed = push_commit(
        env.sandbox_url,
        "acme/webapp",
        "main",
        {"web/app.py": f"# {label} at {time.time()}\n"},
        f"test {label}",
        "Test Author",
    )
    return {
        "source": {
            "provider": "github",
            "repository": "acme/webapp",
            "branch": "main",
            "commit_id": pushed["sha"],
            "commit_message": f"test {label}",
            "author": "Test Author",
            "changed_files": pushed["files"],
        }
    }


def unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def s3_object(env, uri: str) -> bytes:
    """The object an artifact record names (s3://bucket/key?versionId=...)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    key, _, version = key.partition("?versionId=")
    extra = {"VersionId": version} if version else {}
    return aws_client(env, "s3").get_object(Bucket=bucket, Key=key, **extra)["Body"].read()


@pytest.fixture(scope="module")
def pipeline_ready(api, inbox):
    api.wait_for_dag(PIPELINE, timeout=180)
    inbox.drain()
    return True


def subjects(messages: list[dict]) -> list[str]:
    return [m.get("Subject", "") for m in messages]


def test_a_release_runs_end_to_end_and_the_next_ones_approval_lists_the_commits_since(
    airflow_env, api, reviewer_api, inbox, pipeline_ready
):
    conf = push(airflow_env, "e2e")
    commit = conf["source"]["commit_id"]
    lambda_client = aws_client(airflow_env, "lambda", resources.SECOND_REGION)
    alias_before = lambda_client.get_alias(FunctionName=resources.LAMBDA_FUNCTION, Name=resources.LAMBDA_ALIAS)

    run_id = api.trigger(PIPELINE, conf=conf)["dag_run_id"]
    wait_for_task_state(api, PIPELINE, run_id, APPROVAL, {"deferred"}, timeout=300)
    reviewer_api.set_task_state(PIPELINE, run_id, APPROVAL, "success", note="Approved by qa-lead: looks good")
    run = wait_for_run(api, PIPELINE, run_id, timeout=300)

    states = ti_states(api, PIPELINE, run_id)
    assert run["state"] == "success", states
    assert set(states.values()) == {"success"}
    assert {
        "Source.Checkout",
        "Build.Compile",
        "Test.DeployStaging",
        "Test.IntegrationTests",
        APPROVAL,
    } | DEPLOY_TASKS | DOORS == set(states)

    # The approval keeps its reviewer's note.
    approval = next(ti for ti in api.task_instances(PIPELINE, run_id) if ti["task_id"] == APPROVAL)
    assert "qa-lead" in (approval.get("note") or "")

    # References resolved at run time: the build got the commit and the run id from #{...}.
    build = api.xcom(PIPELINE, run_id, "Build.Compile")
    assert build["BuildStatus"] == "SUCCEEDED"
    codebuild = aws_client(airflow_env, "codebuild")
    detail = codebuild.batch_get_builds(ids=[build["BuildId"]])["builds"][0]
    env = {v["name"]: v["value"] for v in detail["environment"]["environmentVariables"]}
    assert env["COMMIT_ID"] == commit
    assert env["RELEASE_ID"] == run_id

    # The artifacts: the commit's files from GitHub -> the build's source -> its bundle -> each server deployment.
    source = api.xcom(PIPELINE, run_id, "Source.Checkout", key="artifacts")["outputs"]["SourceCode"]
    files = unzip(s3_object(airflow_env, source))
    assert files["web/app.py"].startswith(b"# e2e at") and b"version: 0.2" in files["buildspec.yml"]
    built = api.xcom(PIPELINE, run_id, "Build.Compile", key="artifacts")
    assert built["inputs"]["SourceCode"] == source
    assert detail["source"]["type"] == "S3" and source.startswith(f"s3://{detail['source']['location']}")
    bundle = unzip(s3_object(airflow_env, built["outputs"]["BuildOutput"]))
    # What the buildspec's artifacts.files select from the source, and the build's own record.
    assert {"appspec.yml", "scripts/start_server.sh", "build-info.json"} <= set(bundle)
    assert "web/app.py" not in bundle
    codedeploy = aws_client(airflow_env, "codedeploy")
    for task in ("Test.DeployStaging", "Deploy.EC2"):
        deployed = api.xcom(PIPELINE, run_id, task, key="artifacts")["inputs"]["BuildOutput"]
        assert deployed.startswith(built["outputs"]["BuildOutput"] + "?versionId="), (task, deployed)
        revision = codedeploy.get_deployment(deploymentId=api.xcom(PIPELINE, run_id, task)["DeploymentId"])
        location = revision["deploymentInfo"]["revision"]["s3Location"]
        assert f"s3://{location['bucket']}/{location['key']}?versionId={location['version']}" == deployed

    # The Lambda deploy went to the second region, published the bundle (copied to that region's store) as a
    # new version and moved the alias to it.
    deployed = api.xcom(PIPELINE, run_id, "Deploy.Lambda")
    alias_after = lambda_client.get_alias(FunctionName=resources.LAMBDA_FUNCTION, Name=resources.LAMBDA_ALIAS)
    assert alias_after["FunctionVersion"] == str(deployed["LambdaVersion"])
    assert alias_after["FunctionVersion"] != alias_before["FunctionVersion"]
    code = api.xcom(PIPELINE, run_id, "Deploy.Lambda", key="artifacts")["inputs"]["BuildOutput"]
    assert code.startswith(f"s3://{resources.SECOND_ARTIFACT_BUCKET}/runs/{PIPELINE}/"), code
    published = lambda_client.get_function(
        FunctionName=resources.LAMBDA_FUNCTION, Qualifier=alias_after["FunctionVersion"]
    )
    bundle_bytes = s3_object(airflow_env, built["outputs"]["BuildOutput"])
    assert published["Configuration"]["CodeSha256"] == base64.b64encode(hashlib.sha256(bundle_bytes).digest()).decode()

    # The ECS service runs the task definition the deploy registered.
    ecs_out = api.xcom(PIPELINE, run_id, "Deploy.ECS")
    service = aws_client(airflow_env, "ecs").describe_services(
        cluster=resources.ECS_CLUSTER, services=[resources.ECS_SERVICE]
    )["services"][0]
    assert service["taskDefinition"] == ecs_out["TaskDefinitionArn"]
    # ... made from the bundle's taskdef.json, its <IMAGE1_NAME> replaced by the bundle's imageDetail.json.
    registered = aws_client(airflow_env, "ecs").describe_task_definition(taskDefinition=ecs_out["TaskDefinitionArn"])
    image = json.loads(bundle["imageDetail.json"])["ImageURI"]
    assert [c["image"] for c in registered["taskDefinition"]["containerDefinitions"]] == [image]
    assert image.endswith(":" + commit[:7])  # tagged with the commit the pipeline passed the build

    messages = inbox.drain(until=("SUCCEEDED: pipeline",))
    titles = subjects(messages)
    assert sum(t.startswith("STARTED") for t in titles) == 1, titles
    assert sum(t.startswith("APPROVAL NEEDED") for t in titles) == 1, titles
    assert sum(t.startswith("SUCCEEDED") for t in titles) == 1, titles
    approval_msg = next(m["parsed"] for m in messages if m["Subject"].startswith("APPROVAL NEEDED"))
    assert approval_msg["approval"]["pipelineName"] == PIPELINE
    assert approval_msg["approval"]["approvalReviewLink"].startswith(airflow_env.airflow_url)
    assert approval_msg["approval"]["approvalReviewLink"].endswith("/tasks/" + APPROVAL)
    assert commit in approval_msg["approval"]["customData"]

    # The next run: two more commits, started with no revision (the trigger form). It releases main's head,
    # and its approval lists the commits since the release above.
    second, third = (push(airflow_env, label)["source"]["commit_id"] for label in ("next-1", "next-2"))
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    wait_for_task_state(api, PIPELINE, run_id, APPROVAL, {"deferred"}, timeout=300)
    released = api.xcom(PIPELINE, run_id, "Source.Checkout")
    since = [f"{third[:7]} test next-2 (Test Author)", f"{second[:7]} test next-1 (Test Author)"]
    assert (released["CommitId"], released["CommitMessage"]) == (third, "test next-2")
    assert (released["LastReleasedCommitId"], released["CommitsSinceLastRelease"]) == (commit, since)
    messages = inbox.drain(until=("APPROVAL NEEDED",))
    asked = next(m["parsed"] for m in messages if m["Subject"].startswith("APPROVAL NEEDED"))
    assert asked["release"]["sources"] == [
        {
            "action": "Source.Checkout",
            "commitId": third,
            "lastReleasedCommitId": commit,
            "commitsSinceLastRelease": since,
        }
    ]
    # The release console's approvals inbox shows the reviewer the same commits.
    token = httpx.post(
        f"{airflow_env.airflow_url}/auth/token", json={"username": "qa-lead", "password": airflow_env.users["qa-lead"]}
    ).json()["access_token"]
    console = httpx.get(
        f"{airflow_env.airflow_url}/releases/api/approvals", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()
    waiting = next(a for a in console["approvals"] if a["run"]["run_id"] == run_id)
    assert waiting["outputs"]["Source.Checkout"]["CommitsSinceLastRelease"] == since
    reviewer_api.set_task_state(PIPELINE, run_id, APPROVAL, "success", note="Approved by qa-lead: two fixes")
    run = wait_for_run(api, PIPELINE, run_id, timeout=300)
    assert run["state"] == "success", ti_states(api, PIPELINE, run_id)
    # What the EC2 group now runs is this run's bundle, built from main's head.
    deployed = api.xcom(PIPELINE, run_id, "Deploy.EC2", key="artifacts")["inputs"]["BuildOutput"]
    assert f"/{PIPELINE}/" in deployed and deployed.split("?")[0] != built["outputs"]["BuildOutput"]
    titles = subjects(inbox.drain(until=("SUCCEEDED: pipeline",)))
    assert sum(t.startswith("SUCCEEDED: pipeline webapp-release") for t in titles) == 1, titles


def test_failed_build_stops_the_pipeline_and_notifies(airflow_env, api, inbox, pipeline_ready):
    sandbox = SandboxClient(airflow_env.sandbox_url)
    sandbox.set_fault("codebuild", resources.BUILD_PROJECT, mode="fail")
    try:
        run_id = api.trigger(PIPELINE, conf=push(airflow_env, "build-fails"))["dag_run_id"]
        run = wait_for_run(api, PIPELINE, run_id, timeout=180)
    finally:
        sandbox.clear_faults()

    states = ti_states(api, PIPELINE, run_id)
    assert run["state"] == "failed"
    assert states["Build.Compile"] == "failed"
    assert states["Test.DeployStaging"] == "upstream_failed"
    assert states[APPROVAL] == "upstream_failed"
    messages = inbox.drain(until=("FAILED: pipeline",))
    action_failed = [m["parsed"] for m in messages if m["Subject"].startswith("FAILED: action Build.Compile")]
    assert len(action_failed) == 1, subjects(messages)
    detail = action_failed[0]["detail"]
    assert detail["stage"] == "Build" and detail["action"] == "Compile"
    assert "BUILD" in detail["error-summary"]
    assert detail["aws-console-link"]
    pipeline_failed = [m["parsed"] for m in messages if m["Subject"].startswith("FAILED: pipeline")]
    assert len(pipeline_failed) == 1
    assert pipeline_failed[0]["detail"]["failed-stage"] == "Build"
