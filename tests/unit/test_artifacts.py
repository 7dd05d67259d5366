"""Artifacts: the spec's rules (pipeline/artifacts.py), the store's layout, and the actions that write and read
them against moto's S3 and the sandbox's GitHub API over HTTP (release_orchestrator/artifacts.py)."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import boto3
import pytest

from release_orchestrator.artifacts import location, run_folder
from release_orchestrator.hooks.github import GitHubCallError
from release_orchestrator.operators.codebuild import CodeBuildOperator
from release_orchestrator.operators.codedeploy import CodeDeployOperator
from release_orchestrator.operators.source import EcrSourceOperator, GitSourceOperator, S3SourceOperator
from release_orchestrator.pipeline.artifacts import artifact_kwargs
from release_orchestrator.pipeline.loader import load_spec_text, parse_spec_text
from tests.unit.fakes import FakeTaskInstance, task_context

REGION = "us-east-1"
STORE = "s3://release-artifacts/runs"

SPEC = """\
pipeline:
  name: art
  region: us-east-1
  artifact_store: {store}
  stages:
    - name: Source
      actions:
        - name: Checkout
          type: source.github
          configuration: {{repository: acme/webapp, branch: main}}
          output_artifacts: [SourceCode]
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          input_artifacts: [SourceCode]
          output_artifacts: [BuildOutput]
          configuration: {{project_name: webapp-build}}
    - name: Deploy
      actions:
        - name: EC2
          type: deploy.codedeploy
{deploy_extra}{deploy_inputs}          configuration:
            application_name: webapp-ec2
            deployment_group_name: production
{deploy_config}"""


def spec(store=STORE, deploy_input="BuildOutput", deploy_config="", deploy_region=None) -> str:
    return SPEC.format(
        store=store,
        deploy_inputs=f"          input_artifacts: [{deploy_input}]\n" if deploy_input else "",
        deploy_config=deploy_config,
        deploy_extra=f"          region: {deploy_region}\n" if deploy_region else "",
    )


TWO_STORES = "{us-east-1: 's3://release-artifacts/runs', eu-west-1: 's3://release-artifacts-eu/runs'}"


def errors_of(text: str) -> dict[str, str]:
    _, errors = parse_spec_text(text, "x.yaml")
    return {f"{e.stage}/{e.action}/{e.field}": e.message for e in errors}


# --- the spec's rules --------------------------------------------------------------------------------------------


def test_a_pipeline_passing_its_artifacts_in_order_is_valid():
    assert errors_of(spec()) == {}


def test_an_input_nobody_writes_names_the_artifacts_that_exist():
    found = errors_of(spec(deploy_input="BuildOutptu"))
    assert found == {
        "Deploy/EC2/input_artifacts[0]": "no action writes artifact 'BuildOutptu'; artifacts written in this "
        "pipeline: SourceCode, BuildOutput"
    }


def test_an_input_written_later_or_alongside_is_refused():
    later = spec().replace(
        "          input_artifacts: [SourceCode]\n          output_artifacts: [BuildOutput]",
        "          input_artifacts: [Report]\n          output_artifacts: [BuildOutput]",
    ) + (
        "        - name: Report\n          type: test.codebuild\n          output_artifacts: [Report]\n"
        "          configuration: {project_name: tests}\n"
    )
    assert errors_of(later)["Build/Compile/input_artifacts[0]"] == (
        "artifact 'Report' is written by action 'Report' in stage 'Deploy', which does not finish before this "
        "action (it must be in an earlier stage, or in this stage with a lower run_order)"
    )
    # Same stage, same run_order: the two run at once, so neither may read the other's artifact.
    alongside = spec().replace("    - name: Deploy\n      actions:\n", "")
    assert "does not finish before this action" in errors_of(alongside)["Build/EC2/input_artifacts[0]"]
    # A lower run_order in the same stage finishes first.
    ordered = alongside.replace("        - name: EC2\n", "        - name: EC2\n          run_order: 2\n")
    assert errors_of(ordered) == {}


def test_artifact_names_are_unique_and_of_codepipelines_characters():
    text = spec().replace("output_artifacts: [BuildOutput]", "output_artifacts: [SourceCode]")
    found = errors_of(text)
    assert found["Build/Compile/output_artifacts[0]"] == (
        "artifact 'SourceCode' is already written by action 'Checkout' in stage 'Source'; artifact names are "
        "unique in a pipeline"
    )
    found = errors_of(spec().replace("[SourceCode]", "[Source.Code]"))
    assert "must be 1-100 letters, digits, _ or -" in found["Source/Checkout/output_artifacts[0]"]


def test_counts_follow_each_action_type():
    text = spec().replace("output_artifacts: [SourceCode]", "output_artifacts: [SourceCode, Extra]")
    assert errors_of(text)["Source/Checkout/output_artifacts"] == (
        "source.github takes at most 1 output artifact(s), this action names 2"
    )
    approval = spec().replace(
        "    - name: Deploy\n",
        "    - name: Approve\n      actions:\n        - name: QA\n          type: approval.manual\n"
        "          input_artifacts: [BuildOutput]\n    - name: Deploy\n",
    )
    assert errors_of(approval)["Approve/QA/input_artifacts"] == (
        "approval.manual takes no input artifacts, this action names 1"
    )


def test_a_pipeline_passing_artifacts_needs_a_store_and_one_per_region(monkeypatch):
    monkeypatch.delenv("RELEASE_ORCHESTRATOR_ARTIFACT_STORE", raising=False)
    no_store = spec().replace("  artifact_store: s3://release-artifacts/runs\n", "")
    assert (
        "the pipeline has no artifact store: set artifact_store"
        in errors_of(no_store)["Source/Checkout/output_artifacts"]
    )
    # The setting serves specs that name no store.
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_ARTIFACT_STORE", "s3://shared-artifacts")
    assert errors_of(no_store) == {}
    assert (
        "expected s3://bucket or s3://bucket/prefix"
        in errors_of(spec(store="release-artifacts"))["None/None/artifact_store"]
    )
    # An action in another region needs that region's store.
    elsewhere = spec(deploy_region="eu-west-1")
    assert errors_of(elsewhere)["Deploy/EC2/input_artifacts"] == (
        "no artifact store in eu-west-1: make artifact_store a mapping with an s3:// store for eu-west-1"
    )
    assert errors_of(spec(store=TWO_STORES, deploy_region="eu-west-1")) == {}


def test_an_input_artifact_replaces_the_keys_that_name_the_same_thing():
    with_key = spec(deploy_config="            revision_s3_bucket: b\n            revision_s3_key: k.zip\n")
    assert errors_of(with_key)["Deploy/EC2/configuration.revision_s3_bucket"] == (
        "the revision is the input artifact 'BuildOutput': remove revision_s3_bucket, revision_s3_key"
    )
    neither = spec(deploy_input=None)
    assert (
        "platform server needs a revision: an input artifact"
        in errors_of(neither)["Deploy/EC2/configuration.revision_s3_bucket"]
    )
    ecs = spec(
        deploy_config="            platform: ecs\n            task_definition_template: {family: x}\n"
        "            container_name: web\n            container_port: 80\n            image: i\n"
    )
    assert errors_of(ecs)["Deploy/EC2/input_artifacts"] == (
        "'BuildOutput' is not read: name a file in it as 'BuildOutput::taskdef.json' in task_definition_template "
        "or 'BuildOutput::imageDetail.json' in image"
    )
    from_artifact = spec(
        deploy_config="            platform: ecs\n            task_definition_template: BuildOutput::taskdef.json\n"
        "            container_name: web\n            container_port: 80\n            image: Other::imageDetail.json\n"
    )
    assert errors_of(from_artifact) == {
        "Deploy/EC2/configuration.image": "'Other' is not an input artifact of this action: add it to input_artifacts"
    }
    code = spec(
        deploy_config="            platform: lambda\n            function_name: f\n            alias: live\n"
        "            target_version: '3'\n"
    )
    assert errors_of(code)["Deploy/EC2/configuration.publish_version"] == (
        "set publish_version: true to publish the code of 'BuildOutput'"
    )
    build = spec().replace(
        "configuration: {project_name: webapp-build}",
        "configuration: {project_name: webapp-build, source_version: main}",
    )
    assert (
        "the build's source is the input artifact 'SourceCode': remove source_version"
        in errors_of(build)["Build/Compile/configuration.source_version"]
    )


def test_the_store_layout_keeps_each_run_in_its_own_folder():
    here = location("s3://release-artifacts/runs/", "art", "manual__2026-12-04T10:00:00+00:00", "BuildOutput")
    assert here.bucket == "release-artifacts"
    assert here.key == f"runs/art/{run_folder('manual__2026-12-04T10:00:00+00:00')}/BuildOutput.zip"
    assert run_folder("manual__2026-12-04T10:00:00+00:00").startswith("manual__2026-12-04T10_00_00_00_00-")
    # Two run ids that read alike in S3's characters still get folders of their own.
    assert run_folder("a:b") != run_folder("a+b")
    assert location("s3://bucket", "p", "r", "X").key == f"p/{run_folder('r')}/X.zip"


def test_the_compiler_tells_a_reader_where_its_writer_put_the_artifact():
    pipeline = load_spec_text(spec(store=TWO_STORES, deploy_region="eu-west-1"))
    deploy = pipeline.stages[2].actions[0]
    assert artifact_kwargs(pipeline, deploy) == {
        "store": "s3://release-artifacts-eu/runs",
        "kms_key": None,
        "region": "eu-west-1",
        "aws_conn_id": "aws_default",
        "inputs": [
            {
                "name": "BuildOutput",
                "store": "s3://release-artifacts/runs",
                "region": "us-east-1",
                "producer": "Build.Compile",
            }
        ],
        "outputs": [],
    }
    assert artifact_kwargs(pipeline, pipeline.stages[0].actions[0])["outputs"] == [{"name": "SourceCode"}]


# --- actions writing and reading artifacts --------------------------------------------------------------------------


def run_context(run_id="manual__2026-12-04", **extra) -> dict:
    ti = FakeTaskInstance()
    ti.run_id = run_id
    return {
        **task_context(ti),
        "dag_run": SimpleNamespace(dag_id="art", run_id=run_id, conf=extra.pop("conf", {})),
        "params": {},
        "task": None,
        **extra,
    }


ARTIFACTS = {"store": STORE, "region": REGION, "aws_conn_id": "aws_default", "inputs": [], "outputs": []}


@pytest.fixture
def bucket(moto_aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="release-artifacts")
    s3.put_bucket_versioning(Bucket="release-artifacts", VersioningConfiguration={"Status": "Enabled"})
    return s3


def build_output(s3, context, files: dict[str, str]) -> None:
    """The run's BuildOutput artifact in the store: a zip of `files`."""
    built = location(STORE, "art", context["dag_run"].run_id, "BuildOutput")
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    s3.put_object(Bucket=built.bucket, Key=built.key, Body=body.getvalue())


def unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_github_source_stores_the_commits_files_and_releases_the_branch_head_when_the_run_names_none(
    github_api, bucket
):
    pushed = github_api.push("acme/webapp", "main", {"web/orders.py": "print('orders')\n"}, "Add the orders page")
    op = GitSourceOperator(
        task_id="Checkout",
        repository="acme/webapp",
        branch="main",
        artifacts={**ARTIFACTS, "outputs": [{"name": "SourceCode"}]},
    )
    context = run_context()
    outputs = op.execute(context)
    assert outputs["CommitId"] == pushed["sha"]
    assert (outputs["CommitMessage"], outputs["AuthorDisplayName"]) == ("Add the orders page", "Demo Author")
    where = location(STORE, "art", context["dag_run"].run_id, "SourceCode")
    files = unzip(bucket.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())
    # The files at the root (GitHub's top folder dropped), the sample app and the pushed change.
    assert files["web/orders.py"] == b"print('orders')\n" and "appspec.yml" in files
    assert context["ti"].xcom["artifacts"]["outputs"]["SourceCode"].startswith(where.uri + "?versionId=")


def test_a_github_source_fetches_the_commit_a_webhook_named_and_keeps_what_the_webhook_said(github_api, bucket):
    first = github_api.push("acme/webapp", "main", {"a.txt": "1"}, "first")
    github_api.push("acme/webapp", "main", {"a.txt": "2"}, "second")
    op = GitSourceOperator(
        task_id="Checkout",
        repository="acme/webapp",
        branch="main",
        artifacts={**ARTIFACTS, "outputs": [{"name": "SourceCode"}]},
    )
    conf = {"source": {"commit_id": first["sha"], "commit_message": "as pushed", "author": "octo"}}
    context = run_context(conf=conf)
    outputs = op.execute(context)
    assert (outputs["CommitId"], outputs["CommitMessage"], outputs["AuthorDisplayName"]) == (
        first["sha"],
        "as pushed",
        "octo",
    )
    where = location(STORE, "art", context["dag_run"].run_id, "SourceCode")
    assert unzip(bucket.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())["a.txt"] == b"1"


def test_a_github_source_refuses_another_repository_and_names_githubs_answer(github_api, bucket, monkeypatch):
    op = GitSourceOperator(
        task_id="Checkout",
        repository="acme/webapp",
        branch="main",
        artifacts={**ARTIFACTS, "outputs": [{"name": "SourceCode"}]},
    )
    with pytest.raises(ValueError, match="a run cannot fetch another repository's files"):
        op.execute(run_context(conf={"source": {"commit_id": "a" * 40, "repository": "evil/fork"}}))
    with pytest.raises(GitHubCallError, match=r"GET /repos/acme/webapp/commits/a{40} failed: 404 No commit found"):
        op.execute(run_context(conf={"source": {"commit_id": "a" * 40}}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_GITHUB_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "host": json.loads(__import__("os").environ["AIRFLOW_CONN_GITHUB_DEFAULT"])["host"],
                "password": "wrong",
            }
        ),
    )
    with pytest.raises(
        GitHubCallError,
        match="401 Bad credentials; check the token in the password of Airflow connection 'github_default'",
    ):
        op.execute(run_context())


def test_an_s3_source_copies_the_object_version_and_an_ecr_source_writes_image_detail(bucket):
    version = bucket.put_object(Bucket="release-artifacts", Key="app.zip", Body=b"v1")["VersionId"]
    bucket.put_object(Bucket="release-artifacts", Key="app.zip", Body=b"v2")
    op = S3SourceOperator(
        task_id="Bundle",
        bucket="release-artifacts",
        object_key="app.zip",
        artifacts={**ARTIFACTS, "outputs": [{"name": "Bundle"}]},
    )
    context = run_context(conf={"source": {"version_id": version}})
    assert op.execute(context)["VersionId"] == version
    where = location(STORE, "art", context["dag_run"].run_id, "Bundle")
    assert bucket.get_object(Bucket=where.bucket, Key=where.key)["Body"].read() == b"v1"

    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="webapp")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})
    ecr.put_image(repositoryName="webapp", imageManifest=manifest, imageTag="latest")
    op = EcrSourceOperator(
        task_id="Image", repository="webapp", artifacts={**ARTIFACTS, "outputs": [{"name": "Image"}]}
    )
    context = run_context()
    outputs = op.execute(context)
    where = location(STORE, "art", context["dag_run"].run_id, "Image")
    detail = json.loads(unzip(bucket.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())["imageDetail.json"])
    assert detail["ImageURI"] == outputs["ImageURI"] and detail["ImageDigest"] == outputs["ImageDigest"]


def test_a_build_takes_its_input_as_source_and_writes_its_output_where_readers_look(bucket):
    context = run_context()
    source = location(STORE, "art", context["dag_run"].run_id, "SourceCode")
    bucket.put_object(Bucket=source.bucket, Key=source.key, Body=b"zip")
    op = CodeBuildOperator(
        task_id="Compile",
        project_name="webapp-build",
        artifacts={
            **ARTIFACTS,
            "inputs": [{"name": "SourceCode", "store": STORE, "region": REGION}],
            "outputs": [{"name": "BuildOutput"}],
        },
    )
    overrides = op.start_overrides(context, 1)
    assert (overrides["sourceTypeOverride"], overrides["sourceLocationOverride"]) == ("S3", source.bucket_and_key)
    target = location(STORE, "art", context["dag_run"].run_id, "BuildOutput")
    assert overrides["artifactsOverride"] == {
        "type": "S3",
        "location": "release-artifacts",
        "path": target.key.rsplit("/", 1)[0],
        "name": "BuildOutput.zip",
        "namespaceType": "NONE",
        "packaging": "ZIP",
    }
    # A missing input fails the action before any build starts, naming the artifact and where it looked.
    lost = run_context(run_id="manual__other")
    with pytest.raises(
        Exception, match="HeadObject on input artifact 'SourceCode' at s3://release-artifacts/runs/art/"
    ):
        op.start_overrides(lost, 1)


def test_a_deployment_in_another_region_copies_the_artifact_to_its_store_and_deploys_that(bucket):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="release-artifacts-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    context = run_context()
    built = location(STORE, "art", context["dag_run"].run_id, "BuildOutput")
    bucket.put_object(Bucket=built.bucket, Key=built.key, Body=b"bundle")
    op = CodeDeployOperator(
        task_id="EC2",
        application_name="webapp-ec2",
        deployment_group_name="production",
        region_name="eu-west-1",
        artifacts={
            "store": "s3://release-artifacts-eu/runs",
            "region": "eu-west-1",
            "aws_conn_id": "aws_default",
            "inputs": [{"name": "BuildOutput", "store": STORE, "region": REGION}],
            "outputs": [],
        },
    )
    revision = op.revision(context)
    here = location("s3://release-artifacts-eu/runs", "art", context["dag_run"].run_id, "BuildOutput")
    assert revision["revisionType"] == "S3"
    assert {k: revision["s3Location"][k] for k in ("bucket", "key", "bundleType")} == {
        "bucket": "release-artifacts-eu",
        "key": here.key,
        "bundleType": "zip",
    }
    copied = boto3.client("s3", region_name="eu-west-1").get_object(Bucket=here.bucket, Key=here.key)
    assert copied["Body"].read() == b"bundle"
    assert context["ti"].xcom["artifacts"]["inputs"]["BuildOutput"].startswith(here.uri)


def test_a_rollback_run_deploys_the_artifact_of_the_run_it_rolls_back_to_from_a_copy_of_its_own(bucket):
    released = location(STORE, "art", "run-1", "BuildOutput")
    bucket.put_object(Bucket=released.bucket, Key=released.key, Body=b"bundle of run 1")
    failed = location(STORE, "art", "run-2", "BuildOutput")
    bucket.put_object(Bucket=failed.bucket, Key=failed.key, Body=b"bundle of run 2")
    context = run_context("rollback__Deploy__run-2", conf={"rollback": {"stage": "Deploy", "target_run_id": "run-1"}})
    op = CodeDeployOperator(
        task_id="EC2",
        application_name="webapp-ec2",
        deployment_group_name="production",
        artifacts={
            "store": STORE,
            "region": REGION,
            "aws_conn_id": "aws_default",
            "inputs": [{"name": "BuildOutput", "store": STORE, "region": REGION, "producer": "Build.Compile"}],
            "outputs": [],
        },
    )
    revision = op.revision(context)
    own = location(STORE, "art", "rollback__Deploy__run-2", "BuildOutput")
    assert revision["s3Location"]["key"] == own.key
    assert bucket.get_object(Bucket=own.bucket, Key=own.key)["Body"].read() == b"bundle of run 1"


def test_commits_since_the_last_release_read_newest_first_and_a_long_list_is_cut(github_api):
    from release_orchestrator.operators.source import GitHubRepository
    from release_orchestrator.releases import RELEASE_NOTES_MAX_COMMITS, describe_commits

    base = github_api.push("acme/webapp", "main", {"a": "0"}, "released")["sha"]
    shas = [github_api.push("acme/webapp", "main", {"a": str(i)}, f"change {i}\n\nbody")["sha"] for i in range(3)]
    lines = GitHubRepository("github_default", "acme/webapp").since(base, shas[-1])
    assert lines == [f"{sha[:7]} change {i} (Demo Author)" for i, sha in reversed(list(enumerate(shas)))]
    cut = describe_commits([(f"{i:040d}", f"c{i}", "") for i in range(60)])
    assert len(cut) == RELEASE_NOTES_MAX_COMMITS + 1 and cut[-1] == "... and 10 more"
    # GitHub's comparison lists 250 commits of a longer range: the rest are counted too.
    assert describe_commits([("a" * 40, "c", "")], more=300)[-1] == "... and 300 more"


def test_s3_and_beanstalk_deployments_take_their_input_artifact_or_a_source(bucket):
    site = spec(deploy_config="")
    site = site.replace("          type: deploy.codedeploy\n", "          type: deploy.s3\n").replace(
        "            application_name: webapp-ec2\n            deployment_group_name: production\n",
        "            bucket_name: www\n",
    )
    assert errors_of(site) == {}
    both = site.replace(
        "            bucket_name: www\n", "            bucket_name: www\n            source: s3://b/k.zip\n"
    )
    assert errors_of(both)["Deploy/EC2/configuration.source"] == (
        "the zip to deploy is the input artifact 'BuildOutput': remove source"
    )
    neither = spec(deploy_input=None).replace("          type: deploy.codedeploy\n", "          type: deploy.s3\n")
    neither = neither.replace(
        "            application_name: webapp-ec2\n            deployment_group_name: production\n",
        "            bucket_name: www\n",
    )
    assert errors_of(neither)["Deploy/EC2/configuration.source"] == (
        "missing: name the zip to deploy as s3://bucket/key, or give the action an input artifact"
    )

    from release_orchestrator.operators.s3_deploy import S3DeployOperator

    bucket.create_bucket(Bucket="site-www")
    context = run_context()
    build_output(bucket, context, {"index.html": "<h1>hi</h1>"})
    op = S3DeployOperator(
        task_id="Site",
        bucket_name="site-www",
        object_key="site",
        artifacts={**ARTIFACTS, "inputs": [{"name": "BuildOutput", "store": STORE, "region": REGION}]},
    )
    assert op.execute(context)["ObjectCount"] in (1, "1")
    assert bucket.get_object(Bucket="site-www", Key="site/index.html")["Body"].read() == b"<h1>hi</h1>"


def test_retention_is_a_lifecycle_rule_per_pipeline_folder_that_keeps_the_buckets_other_rules(bucket, tmp_path, capsys):
    from release_orchestrator.__main__ import main

    (tmp_path / "art.yaml").write_text(spec())
    other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 7}}
    bucket.put_bucket_lifecycle_configuration(Bucket="release-artifacts", LifecycleConfiguration={"Rules": [other]})

    assert main(["artifact-retention", str(tmp_path), "--days", "30", "--dry-run"]) == 0
    assert "would expire after 30 days: runs/art/" in capsys.readouterr().out
    assert bucket.get_bucket_lifecycle_configuration(Bucket="release-artifacts")["Rules"] == [other]

    for days in (30, 14):  # again, with another retention: the rule is replaced, not added
        assert main(["artifact-retention", str(tmp_path), "--days", str(days)]) == 0
    rules = {r["ID"]: r for r in bucket.get_bucket_lifecycle_configuration(Bucket="release-artifacts")["Rules"]}
    assert set(rules) == {"logs", "release-orchestrator:art"}
    ours = rules["release-orchestrator:art"]
    assert ours["Filter"] == {"Prefix": "runs/art/"} and ours["Expiration"] == {"Days": 14}
    assert ours["NoncurrentVersionExpiration"] == {"NoncurrentDays": 14}


def test_files_that_keys_name_in_an_input_artifact_are_read_from_it(bucket):
    from release_orchestrator.operators.stepfunctions import StepFunctionsOperator, execution_input

    found = errors_of(
        spec()
        .replace(
            "          type: deploy.codedeploy\n",
            "          type: invoke.stepfunctions\n",
        )
        .replace(
            "            application_name: webapp-ec2\n            deployment_group_name: production\n",
            "            state_machine_arn: arn:aws:states:us-east-1:123456789012:stateMachine:smoke\n"
            "            input: Other::tests/input.json\n",
        )
    )
    assert found == {
        "Deploy/EC2/configuration.input": "'Other' is not an input artifact of this action: add it to input_artifacts",
        "Deploy/EC2/input_artifacts": "'BuildOutput' is not read: name a file in it (input: BuildOutput::<file>)",
    }

    context = run_context()
    build_output(bucket, context, {"tests/input.json": '{"suite": "smoke"}'})
    op = StepFunctionsOperator(
        task_id="Smoke",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:smoke",
        input="BuildOutput::tests/input.json",
        artifacts={**ARTIFACTS, "inputs": [{"name": "BuildOutput", "store": STORE, "region": REGION}]},
    )
    with pytest.raises(ValueError, match="read from an input artifact when the action runs"):
        execution_input(op.input, None)
    op.load_artifact_files(context, ("input",))
    assert execution_input(op.input, None, lambda v: op.file_text(v, "input", None)) == '{"suite": "smoke"}'
    op.input = "BuildOutput::tests/missing.json"
    with pytest.raises(ValueError, match="input artifact 'BuildOutput' has no file 'tests/missing.json'"):
        op.load_artifact_files(context, ("input",))


def test_a_lambda_action_hands_its_function_the_input_artifacts_locations():
    from release_orchestrator.artifacts import ArtifactLocation
    from release_orchestrator.operators.lambda_invoke import job_event

    where = ArtifactLocation("BuildOutput", "release-artifacts", "runs/art/r-1/BuildOutput.zip", "v7")
    data = job_event("job-1", "release-check", None, [where])["CodePipeline.job"]["data"]
    assert data["inputArtifacts"] == [
        {
            "name": "BuildOutput",
            "revision": "v7",
            "location": {
                "type": "S3",
                "s3Location": {"bucketName": "release-artifacts", "objectKey": "runs/art/r-1/BuildOutput.zip"},
            },
        }
    ]
    assert data["outputArtifacts"] == []


def test_a_build_with_several_artifacts_names_its_source_and_gets_secondary_sources_and_artifacts(bucket):
    found = errors_of(spec().replace("input_artifacts: [SourceCode]\n", "input_artifacts: [SourceCode, SourceCode]\n"))
    assert found["Build/Compile/input_artifacts[1]"] == "artifact 'SourceCode' is named twice"
    assert (
        "with several input artifacts, name the build's source" in found["Build/Compile/configuration.primary_source"]
    )

    context = run_context()
    for name in ("SourceCode", "Config"):
        where = location(STORE, "art", context["dag_run"].run_id, name)
        bucket.put_object(Bucket=where.bucket, Key=where.key, Body=b"zip")
    op = CodeBuildOperator(
        task_id="Compile",
        project_name="webapp-build",
        primary_source="Config",
        artifacts={
            **ARTIFACTS,
            "inputs": [{"name": n, "store": STORE, "region": REGION} for n in ("SourceCode", "Config")],
            "outputs": [{"name": "BuildOutput"}, {"name": "Reports"}],
        },
    )
    overrides = op.start_overrides(context, 1)
    config = location(STORE, "art", context["dag_run"].run_id, "Config")
    source = location(STORE, "art", context["dag_run"].run_id, "SourceCode")
    assert overrides["sourceLocationOverride"] == config.bucket_and_key  # the primary source named
    assert overrides["secondarySourcesOverride"] == [
        {"type": "S3", "location": source.bucket_and_key, "sourceIdentifier": "SourceCode"}
    ]
    assert overrides["artifactsOverride"]["name"] == "BuildOutput.zip"
    [reports] = overrides["secondaryArtifactsOverride"]
    assert (reports["name"], reports["artifactIdentifier"], reports["packaging"]) == ("Reports.zip", "Reports", "ZIP")


def test_an_ecs_deployment_reads_its_task_definition_image_and_appspec_from_the_bundle(bucket):
    context = run_context()
    taskdef = {"family": "web", "containerDefinitions": [{"name": "web", "image": "<IMAGE1_NAME>"}]}
    appspec = (
        "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n"
        "        TaskDefinition: <TASK_DEFINITION>\n        LoadBalancerInfo:\n          ContainerName: web\n"
        "          ContainerPort: 8080\n"
    )
    build_output(
        bucket,
        context,
        {
            "taskdef.json": json.dumps(taskdef),
            "imageDetail.json": json.dumps({"ImageURI": "123.dkr.ecr/web:abc1234"}),
            "appspec.yaml": appspec,
        },
    )
    op = CodeDeployOperator(
        task_id="ECS",
        application_name="webapp-ecs",
        deployment_group_name="production",
        platform="ecs",
        task_definition_template="BuildOutput::taskdef.json",
        image="BuildOutput::imageDetail.json",
        appspec_template="BuildOutput::appspec.yaml",
        artifacts={**ARTIFACTS, "inputs": [{"name": "BuildOutput", "store": STORE, "region": REGION}]},
    )
    assert op.task_definition(context)["containerDefinitions"] == [{"name": "web", "image": "123.dkr.ecr/web:abc1234"}]
    properties = op.ecs_appspec("arn:aws:ecs:us-east-1:1:task-definition/web:7", context)["Resources"][0]
    assert properties["TargetService"]["Properties"] == {
        "TaskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/web:7",
        "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": 8080},
    }
    found = errors_of(
        spec(
            deploy_config="            platform: ecs\n            task_definition_template: BuildOutput::taskdef.json\n"
            "            image: BuildOutput::imageDetail.json\n            appspec_template: BuildOutput::appspec.yaml\n"
            "            container_port: 80\n"
        )
    )
    assert found == {"Deploy/EC2/configuration.container_port": "comes from appspec_template: remove it"}


def test_artifacts_are_encrypted_with_the_stores_kms_key(bucket, github_api):
    from release_orchestrator.pipeline.iam import policy

    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    text = spec().replace("  artifact_store:", f"  artifact_kms_key: {key_arn}\n  artifact_store:", 1)
    assert errors_of(text) == {}
    assert errors_of(text.replace(key_arn, "my-key"))["None/None/artifact_kms_key"].startswith(
        "expected a KMS key ARN, key id or alias/<name>"
    )
    pipeline = load_spec_text(text)
    wiring = artifact_kwargs(pipeline, pipeline.stages[0].actions[0])
    assert wiring["kms_key"] == key_arn
    statements = {s["Sid"]: s for s in policy(pipeline, account_id="123456789012", region=REGION)["Statement"]}
    assert statements["KmsEncryptAndDecryptTheArtifacts"]["Resource"] == [key_arn]

    op = GitSourceOperator(task_id="Checkout", repository="acme/webapp", branch="main", artifacts=wiring)
    context = run_context()
    op.execute(context)
    where = location(STORE, "art", context["dag_run"].run_id, "SourceCode")
    head = bucket.head_object(Bucket=where.bucket, Key=where.key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
