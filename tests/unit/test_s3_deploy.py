"""deploy.s3 against moto: extracted and copied artifacts, object settings, retries, a kill, bad input,
validation."""

from __future__ import annotations

import io
import json
import zipfile
from unittest import mock

import boto3
import pytest
import yaml
from moto import mock_aws

from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.operators.s3_deploy import ArtifactError, DeployStopped, S3DeployOperator
from release_orchestrator.pipeline.loader import parse_spec_text
from tests.unit.fakes import FakeTaskInstance

REGION = "us-east-1"
BUCKETS = ("release-artifacts", "webapp-site")
SITE = {"index.html": "<h1>webapp</h1>", "css/site.css": "body {}", "app.js": "run()"}


@pytest.fixture(scope="module")
def moto_s3():
    """One moto for the module (starting it is most of a test's time here), as conftest's moto_aws sets it up."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
        with mock_aws():
            client = boto3.client("s3", region_name=REGION)
            for bucket in BUCKETS:
                client.create_bucket(Bucket=bucket)
            yield client


@pytest.fixture
def s3(moto_s3):
    """The artifact and target buckets, emptied after each test."""
    yield moto_s3
    for bucket in BUCKETS:
        for item in moto_s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            moto_s3.delete_object(Bucket=bucket, Key=item["Key"])


def zipped(files: dict[str, str], folders: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            archive.writestr(folder, "")  # a directory entry
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def put_artifact(s3, data: bytes, key: str = "webapp-build/abc/site.zip") -> str:
    s3.put_object(Bucket="release-artifacts", Key=key, Body=data)
    return f"s3://release-artifacts/{key}"


def context():
    ti = FakeTaskInstance()
    return {"ti": ti, "task_instance": ti}


def operator(**kwargs):
    kwargs.setdefault("task_id", "deploy")
    kwargs.setdefault("bucket_name", "webapp-site")
    return S3DeployOperator(**kwargs)


def objects(s3, prefix: str = "") -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket="webapp-site", Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket="webapp-site", Key=o["Key"])["Body"].read().decode() for o in listed}


def test_extract_puts_each_file_under_the_prefix_with_its_content_type(s3):
    source = put_artifact(s3, zipped(SITE, folders=("css/",)))
    run = context()
    outputs = operator(source=source, object_key="releases/v1/", cache_control="max-age=300").execute(run)

    assert objects(s3) == {f"releases/v1/{name}": text for name, text in SITE.items()}
    head = s3.head_object(Bucket="webapp-site", Key="releases/v1/index.html")
    assert head["ContentType"] == "text/html" and head["CacheControl"] == "max-age=300"
    assert s3.head_object(Bucket="webapp-site", Key="releases/v1/css/site.css")["ContentType"] == "text/css"
    assert outputs == {
        "BucketName": "webapp-site",
        "ObjectKey": "releases/v1",
        "ObjectCount": "3",
        "ConsoleUrl": "https://console.aws.amazon.com/s3/buckets/webapp-site?region=us-east-1&prefix=releases%2Fv1%2F",
    }
    # The same place as the task's "S3 objects" link.
    assert run["ti"].xcom["_s3_deploy_objects"]["prefix"] == "releases/v1/"


def test_extract_without_a_prefix_puts_files_at_the_bucket_root(s3):
    source = put_artifact(s3, zipped({"index.html": "root"}))
    outputs = operator(source=source).execute(context())
    assert objects(s3) == {"index.html": "root"}
    assert outputs["ObjectKey"] == "" and outputs["ConsoleUrl"].endswith("&prefix=")


def test_no_extract_copies_the_zip_to_the_key(s3):
    data = zipped(SITE)
    source = put_artifact(s3, data)
    outputs = operator(source=source, extract="false", object_key="bundles/site.zip", canned_acl="private").execute(
        context()
    )

    body = s3.get_object(Bucket="webapp-site", Key="bundles/site.zip")
    assert body["Body"].read() == data and body["ContentType"] == "application/zip"
    assert outputs["ObjectKey"] == "bundles/site.zip" and outputs["ObjectCount"] == "1"
    assert outputs["ConsoleUrl"].endswith("&prefix=bundles%2F")


def test_objects_are_encrypted_with_the_given_key(s3):
    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    source = put_artifact(s3, zipped({"index.html": "x"}))
    operator(source=source, object_key="site", kms_encryption_key_arn=key_arn).execute(context())
    head = s3.head_object(Bucket="webapp-site", Key="site/index.html")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn


def test_a_retry_puts_the_same_objects_again(s3):
    source = put_artifact(s3, zipped(SITE))
    first = operator(source=source, object_key="site").execute(context())
    second = operator(source=source, object_key="site").execute(context())
    assert first == second and objects(s3) == {f"site/{name}": text for name, text in SITE.items()}


def test_a_kill_lets_the_object_being_put_finish_and_puts_no_further_one(s3):
    source = put_artifact(s3, zipped(SITE))
    op = operator(source=source, object_key="site")
    upload = op.hook.conn.upload_fileobj

    def killed_while_putting(*args, **kwargs):
        op.on_kill()  # as the SIGTERM handler calls it, while the first object is being put
        return upload(*args, **kwargs)

    with (
        mock.patch.object(op.hook.conn, "upload_fileobj", side_effect=killed_while_putting),
        pytest.raises(DeployStopped) as failure,
    ):
        op.execute(context())
    assert str(failure.value) == (
        f"Task killed after putting 1 of 3 object(s) from {source} under s3://webapp-site/site: "
        "the rest were not put (a new try puts them all)"
    )
    assert objects(s3) == {"site/index.html": SITE["index.html"]}


def test_a_missing_artifact_fails_naming_it(s3):
    with pytest.raises(AwsCallError) as failure:
        operator(source="s3://release-artifacts/webapp-build/nope.zip", object_key="site").execute(context())
    assert str(failure.value).startswith("GetObject on s3://release-artifacts/webapp-build/nope.zip failed: ")
    assert "NoSuchKey" in str(failure.value)


def test_an_artifact_that_is_not_a_zip_fails_naming_it(s3):
    source = put_artifact(s3, b"just text", key="webapp-build/abc/site.zip")
    with pytest.raises(ArtifactError) as failure:
        operator(source=source, object_key="site").execute(context())
    assert str(failure.value).startswith("s3://release-artifacts/webapp-build/abc/site.zip is not a zip archive")
    assert "extract: false" in str(failure.value)
    assert objects(s3) == {}


def test_a_corrupt_member_fails_naming_the_archive_and_the_file(s3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("index.html", "a" * 2000)
    data = bytearray(buffer.getvalue())
    data[100:110] = b"b" * 10  # inside the stored file: its CRC no longer matches
    source = put_artifact(s3, bytes(data))
    with pytest.raises(ArtifactError, match=r"site\.zip: cannot read 'index\.html' from the archive"):
        operator(source=source, object_key="site").execute(context())


def test_a_member_outside_the_prefix_is_refused_before_anything_is_put(s3):
    source = put_artifact(s3, zipped({"index.html": "a", "../escape.html": "b"}))
    with pytest.raises(ArtifactError, match=r"archive member '\.\./escape\.html' would land outside site"):
        operator(source=source, object_key="site").execute(context())
    assert objects(s3) == {}


def test_a_source_that_is_not_an_s3_uri_fails_before_any_call(s3):
    with pytest.raises(ArtifactError, match="source: expected an S3 object URI"):
        operator(source="release-artifacts/site.zip").execute(context())


def spec(configuration: dict) -> str:
    action = {"name": "Website", "type": "deploy.s3", "configuration": configuration}
    return yaml.safe_dump({"pipeline": {"name": "p", "stages": [{"name": "Deploy", "actions": [action]}]}})


@pytest.mark.parametrize(
    "configuration, field, message",
    [
        ({"bucket_name": "b", "source": "site.zip"}, "source", "expected an S3 object URI"),
        ({"bucket_name": "b", "source": "s3://bucket-only"}, "source", "expected an S3 object URI"),
        ({"bucket_name": "b", "source": "s3://a/b.zip", "extract": False}, "object_key", "required when extract"),
        ({"bucket_name": "b", "source": "s3://a/b.zip", "canned_acl": "public"}, "canned_acl", "bucket-owner-read"),
        ({"source": "s3://a/b.zip"}, "bucket_name", "missing required key"),
    ],
)
def test_bad_configurations_are_errors_on_their_field(configuration, field, message):
    _, errors = parse_spec_text(spec(configuration), "x.yaml")
    [error] = errors
    assert (error.stage, error.action, error.field) == ("Deploy", "Website", f"configuration.{field}")
    assert message in error.message


def test_a_source_with_a_reference_validates():
    configuration = {"bucket_name": "b", "source": "s3://release-artifacts/#{Build.ARTIFACT_KEY}"}
    text = yaml.safe_dump(
        {
            "pipeline": {
                "name": "p",
                "stages": [
                    {
                        "name": "Build",
                        "actions": [
                            {
                                "name": "Compile",
                                "type": "build.codebuild",
                                "namespace": "Build",
                                "configuration": {"project_name": "webapp-build"},
                            }
                        ],
                    },
                    {
                        "name": "Deploy",
                        "actions": [{"name": "Website", "type": "deploy.s3", "configuration": configuration}],
                    },
                ],
            }
        }
    )
    assert parse_spec_text(text)[1] == []


def test_a_spec_with_both_types_compiles_to_their_operators():
    from release_orchestrator.operators.lambda_invoke import LambdaInvokeOperator
    from release_orchestrator.pipeline.compiler import build_dag
    from release_orchestrator.pipeline.loader import load_spec_text
    from tests.unit.test_iam_policy import SITE

    dag = build_dag(load_spec_text(SITE))
    website, archive = dag.get_task("Deploy.Website"), dag.get_task("Deploy.Archive")
    smoke = dag.get_task("Deploy.Smoke")
    assert isinstance(website, S3DeployOperator) and isinstance(smoke, LambdaInvokeOperator)
    assert website.extract is True and archive.extract is False  # the default, and the spec's
    assert website.source.startswith("s3://release-artifacts/{{ release_output(ti, 'Build.Compile', 'Build'")
    assert smoke.function_name == "site-smoke:live" and smoke.region_name == "us-east-1"
    assert {t.task_id for t in smoke.upstream_list} == {"Deploy.Website", "Deploy.Archive"}  # run_order 2
