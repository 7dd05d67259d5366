"""Event-driven sources and manual starts, in the real Airflow processes on the sandbox.

S3 uploads, ECR image pushes and CodeCommit pushes go, as on AWS, through EventBridge into an SQS queue; the
triggerer's SourceEventTrigger watchers read it and Airflow's event-driven scheduling starts the pipelines whose
assets they watch. Pipelines: tests/integration/pipelines/ev-*.yaml. They read their own queue, `ev-test-events`,
which the module sets up as an operator would in AWS (`python -m release_orchestrator.events setup`: the queue,
EventBridge rules for the watched bucket and key / repositories, EventBridge notifications on the bucket), so
what other test modules do in the shared sandbox never reaches it. Their triggers start before the queue exists
and wait for it.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from release_orchestrator.events import setup as events_setup
from release_orchestrator.events.spec import watched_sources
from release_orchestrator.pipeline.loader import load_specs
from tests.integration.helpers import aws_client, wait_for, wait_for_run

pytestmark = pytest.mark.integration

BUCKET = "release-artifacts"
S3_KEY = "ev-tests/app.zip"
ECR_REPO, ECR_TAG = "webapp", "ev-test"
CC_REPO = "ev-repo"
EVENT_DAGS = ("ev-s3", "ev-ecr", "ev-codecommit")
QUEUE = "ev-test-events"
PIPELINES = Path(__file__).parent / "pipelines"


@pytest.fixture(scope="module")
def aws(airflow_env, api):
    for dag_id in (*EVENT_DAGS, "ev-manual"):
        api.wait_for_dag(dag_id, timeout=240)
    codecommit = aws_client(airflow_env, "codecommit")
    try:
        codecommit.create_repository(repositoryName=CC_REPO)
    except codecommit.exceptions.RepositoryNameExistsException:
        pass
    pipelines, errors = load_specs([PIPELINES / f"{dag_id}.yaml" for dag_id in EVENT_DAGS])
    assert errors == {}
    [routing] = events_setup.routing_plan([s for p in pipelines for s in watched_sources(p)])
    assert routing.queue == QUEUE
    events_setup.apply(routing, lambda service, region: aws_client(airflow_env, service), say=lambda line: None)
    return {service: aws_client(airflow_env, service) for service in ("s3", "ecr", "sqs", "codebuild")}


def run_ids(api, dag_id: str) -> set[str]:
    runs = api.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000})["dag_runs"]
    return {run["dag_run_id"] for run in runs}


def new_run(api, dag_id: str, before: set[str], timeout: float = 150) -> dict:
    """The one run of `dag_id` started since `before` was taken (waits for it)."""
    new = wait_for(lambda: run_ids(api, dag_id) - before, timeout, what=f"a new run of {dag_id}")
    assert len(new) == 1, f"{dag_id} started {len(new)} runs: {sorted(new)}"
    return api.get_run(dag_id, new.pop())


def upstream_events(api, dag_id: str, run_id: str) -> list[dict]:
    # Ask once the run has started: Airflow 3.3.2 answers 500 while a run it lists has no start date.
    return api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]


def upload(aws, key: str = S3_KEY) -> str:
    return aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=uuid.uuid4().bytes)["VersionId"]


def push_image(aws, tag: str) -> str:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7,
            "digest": "sha256:" + uuid.uuid4().hex * 2,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 7,
                "digest": "sha256:" + uuid.uuid4().hex * 2,
            }
        ],
    }
    image = aws["ecr"].put_image(repositoryName=ECR_REPO, imageManifest=json.dumps(manifest), imageTag=tag)
    return image["image"]["imageId"]["imageDigest"]


def push_commit(airflow_env, branch: str, delete: bool = False, message: str = "Change") -> str:
    """A commit of one file to `branch` of the CodeCommit repository (its push event goes on the bus)."""
    response = httpx.post(
        f"{airflow_env.sandbox_url}/_sandbox/codecommit/push",
        json={
            "repository": CC_REPO,
            "branch": branch,
            "delete": delete,
            "files": {"app.txt": f"{branch} {uuid.uuid4().hex}\n"},
            "message": message,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["commitId"]


def test_s3_upload_starts_the_pipeline_with_that_object_version(api, aws):
    before = run_ids(api, "ev-s3")
    version = upload(aws)

    run = new_run(api, "ev-s3", before)
    assert run["run_type"] == "asset_triggered"
    assert wait_for_run(api, "ev-s3", run["dag_run_id"], timeout=180)["state"] == "success"
    outputs = api.xcom("ev-s3", run["dag_run_id"], "Source.Artifact")
    assert outputs["VersionId"] == version
    assert (outputs["BucketName"], outputs["ObjectKey"]) == (BUCKET, S3_KEY)

    # The run's asset event carries the EventBridge event that came through the queue.
    [event] = upstream_events(api, "ev-s3", run["dag_run_id"])
    payload = event["extra"]["payload"]
    assert payload["event"]["source"] == "aws.s3" and payload["event"]["detail-type"] == "Object Created"
    assert payload["event"]["detail"]["object"]["version-id"] == version
    assert payload["sqs"]["queue"] == QUEUE


def test_ecr_push_starts_the_pipeline_with_that_image_digest(api, aws):
    before = run_ids(api, "ev-ecr")
    digest = push_image(aws, ECR_TAG)

    run = new_run(api, "ev-ecr", before)
    assert run["run_type"] == "asset_triggered"
    assert wait_for_run(api, "ev-ecr", run["dag_run_id"], timeout=180)["state"] == "success"
    outputs = api.xcom("ev-ecr", run["dag_run_id"], "Source.Image")
    assert outputs["ImageDigest"] == digest
    assert outputs["ImageTag"] == ECR_TAG
    assert outputs["ImageURI"].endswith(f"/{ECR_REPO}@{digest}")


def test_codecommit_push_starts_the_pipeline_with_that_commit_its_files_and_the_commits_since(airflow_env, api, aws):
    before = run_ids(api, "ev-codecommit")
    commit = push_commit(airflow_env, "release/2.0", message="First of 2.0")  # matches includes "release/*"

    run = new_run(api, "ev-codecommit", before)
    assert wait_for_run(api, "ev-codecommit", run["dag_run_id"], timeout=180)["state"] == "success"
    outputs = api.xcom("ev-codecommit", run["dag_run_id"], "Source.Checkout")
    assert outputs["CommitId"] == commit
    assert (outputs["BranchName"], outputs["RepositoryName"], outputs["CommitMessage"]) == (
        "release/2.0",
        CC_REPO,
        "First of 2.0",
    )
    # The commit's files, read from CodeCommit, are the run's source artifact.
    stored = api.xcom("ev-codecommit", run["dag_run_id"], "Source.Checkout", key="artifacts")["outputs"]["SourceCode"]
    bucket, _, key = stored.removeprefix("s3://").partition("/")
    key, _, version = key.partition("?versionId=")
    body = aws["s3"].get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("app.txt").startswith(b"release/2.0 ")

    # The next push's run lists the commits since the release above (the Source stage is the pipeline's last).
    before = run_ids(api, "ev-codecommit")
    second = push_commit(airflow_env, "release/2.0", message="Fix one")
    run = new_run(api, "ev-codecommit", before)
    assert wait_for_run(api, "ev-codecommit", run["dag_run_id"], timeout=180)["state"] == "success"
    outputs = api.xcom("ev-codecommit", run["dag_run_id"], "Source.Checkout")
    assert (outputs["CommitId"], outputs["LastReleasedCommitId"]) == (second, commit)
    assert outputs["CommitsSinceLastRelease"] == [f"{second[:7]} Fix one (Demo Author)"]


def test_events_for_other_sources_start_nothing_and_leave_no_message_behind(airflow_env, api, aws):
    before = {dag_id: run_ids(api, dag_id) for dag_id in EVENT_DAGS}
    # None of these is watched: other keys (the EventBridge rule already leaves them out), another tag, excluded
    # or unlisted branches, a deleted branch (these reach the queue, and the triggers leave them out).
    upload(aws, "ev-tests/other.zip")
    upload(aws, "ev-tests/app.zip.bak")
    push_image(aws, "ev-other")
    push_commit(airflow_env, "feature/login")
    push_commit(airflow_env, "release/old-1")
    push_commit(airflow_env, "main", delete=True)
    # Then one each pipeline watches. Each watcher reads the queue in order, so when a pipeline's new run is the
    # one of its barrier alone, every event queued before was read and left out: a wrongly matched one would
    # have started a run of its own first, or been folded into this one.
    barriers = {
        "ev-s3": upload(aws),
        "ev-ecr": push_image(aws, ECR_TAG),
        "ev-codecommit": push_commit(airflow_env, "release/2.1"),
    }
    for dag_id, barrier in barriers.items():
        run = new_run(api, dag_id, before[dag_id])
        assert wait_for_run(api, dag_id, run["dag_run_id"], timeout=180)["state"] == "success"
        [event] = upstream_events(api, dag_id, run["dag_run_id"])
        assert barrier in json.dumps(event["extra"]["payload"]["source"]), (dag_id, event["extra"]["payload"])
        assert run_ids(api, dag_id) - before[dag_id] == {run["dag_run_id"]}, dag_id

    # Every message was deleted once all watchers had seen it: nothing waits for redelivery.
    url = aws["sqs"].get_queue_url(QueueName=QUEUE)["QueueUrl"]

    def drained():
        attributes = aws["sqs"].get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(value == "0" for value in attributes.values())

    wait_for(drained, 60, what="the source events queue to be empty")


def test_manual_start_overrides_source_revision_and_variables(airflow_env, api, aws):
    # A branch no trigger watches: the push starts nothing, and the manual run releases its commit.
    commit = push_commit(airflow_env, "hotfix/9.9")
    push_commit(airflow_env, "hotfix/9.9")  # the branch's head is not what the run asks for
    run_id = api.trigger(
        "ev-manual", conf={"source_revision": commit, "Branch": "hotfix/9.9", "DeployEnv": "production"}
    )["dag_run_id"]
    run = wait_for_run(api, "ev-manual", run_id, timeout=240)
    assert run["state"] == "success"

    source = api.xcom("ev-manual", run_id, "Source.Checkout")
    assert source["CommitId"] == commit
    assert source["BranchName"] == "hotfix/9.9"  # configuration branch: "#{variables.Branch}"
    build = api.xcom("ev-manual", run_id, "Build.Compile")
    assert build["ResolvedSourceVersion"] == commit  # source_version: "#{Source.CommitId}"
    assert build["IMAGE_TAG"] == commit[:7]  # exported by the buildspec from COMMIT_ID: "#{Source.CommitId}"
    # DEPLOY_ENV: "#{variables.DeployEnv}" reached CodeBuild resolved.
    [details] = aws["codebuild"].batch_get_builds(ids=[build["BuildId"]])["builds"]
    env = {v["name"]: v["value"] for v in details["environment"]["environmentVariables"]}
    assert env["DEPLOY_ENV"] == "production"


def test_manual_start_of_an_event_driven_pipeline_releases_the_version_asked_for(api, aws):
    older = upload(aws, S3_KEY)
    before = run_ids(api, "ev-s3")
    wait_for(lambda: run_ids(api, "ev-s3") - before, 150, what="the upload's own run")  # let it start first
    upload(aws, S3_KEY)  # a newer version: the latest is not what the manual run asks for

    run_id = api.trigger("ev-s3", conf={"source_revision": older})["dag_run_id"]
    assert wait_for_run(api, "ev-s3", run_id, timeout=180)["state"] == "success"
    assert api.xcom("ev-s3", run_id, "Source.Artifact")["VersionId"] == older
