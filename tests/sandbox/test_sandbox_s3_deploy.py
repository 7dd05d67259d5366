"""deploy.s3 against the sandbox over HTTP: the operator extracts or copies an artifact into a bucket."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources as r
from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.operators.s3_deploy import DeployStopped, S3DeployOperator
from tests.unit.fakes import FakeTaskInstance

CONNECTION = "sandbox_s3"
# A bucket of these tests' own: the seeded artifact bucket sends S3 events other tests read.
BUCKET = "sandbox-site-deploys"
SITE = {"index.html": "<h1>webapp</h1>", "assets/app.js": "run()", "assets/logo.svg": "<svg/>"}


@pytest.fixture
def s3(sandbox, aws, monkeypatch):
    extra = {"endpoint_url": sandbox.url, "region_name": r.REGION}
    value = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONNECTION.upper()}", value)
    client = aws("s3")
    try:
        client.create_bucket(Bucket=BUCKET)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return client


@pytest.fixture
def artifact(s3):
    """An artifact zip under a key of this test's own: (s3 URI, its bytes, a fresh target prefix)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in SITE.items():
            archive.writestr(name, text)
    run = uuid.uuid4().hex[:8]
    key = f"artifacts/{run}/site.zip"
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}", buffer.getvalue(), f"site/{run}"


def context():
    ti = FakeTaskInstance()
    return {"ti": ti, "task_instance": ti}


def deploy(**kwargs) -> S3DeployOperator:
    return S3DeployOperator(
        task_id="deploy", bucket_name=BUCKET, aws_conn_id=CONNECTION, region_name=r.REGION, **kwargs
    )


def test_extract_puts_every_file_under_the_prefix(s3, artifact):
    source, _, prefix = artifact
    outputs = deploy(source=source, object_key=prefix, cache_control="max-age=60").execute(context())
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(f"{prefix}/{name}" for name in SITE)
    svg = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/assets/logo.svg")
    assert svg["Body"].read() == b"<svg/>" and svg["ContentType"] == "image/svg+xml"
    assert svg["CacheControl"] == "max-age=60"
    assert outputs["ObjectCount"] == "3" and outputs["ObjectKey"] == prefix and outputs["BucketName"] == BUCKET


def test_no_extract_copies_the_zip_as_it_is(s3, artifact):
    source, data, prefix = artifact
    outputs = deploy(source=source, extract=False, object_key=f"{prefix}/bundle.zip", canned_acl="private").execute(
        context()
    )
    copied = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/bundle.zip")
    assert copied["Body"].read() == data and copied["ContentType"] == "application/zip"
    assert outputs["ObjectCount"] == "1" and outputs["ObjectKey"] == f"{prefix}/bundle.zip"


def test_a_missing_artifact_fails_naming_it(s3):
    missing = f"s3://{BUCKET}/artifacts/{uuid.uuid4().hex[:8]}/missing.zip"
    with pytest.raises(AwsCallError) as failure:
        deploy(source=missing, object_key="site/never").execute(context())
    assert str(failure.value).startswith(f"GetObject on {missing} failed: NoSuchKey")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="site/never")


def test_a_kill_puts_no_further_object(s3, artifact):
    source, _, prefix = artifact
    op = deploy(source=source, object_key=prefix)
    upload = op.hook.conn.upload_fileobj

    def killed_while_putting(*args, **kwargs):
        op.on_kill()  # as the SIGTERM handler calls it while the first object travels to the sandbox
        return upload(*args, **kwargs)

    op.hook.conn.upload_fileobj = killed_while_putting
    with pytest.raises(DeployStopped, match=r"Task killed after putting 1 of 3 object\(s\)"):
        op.execute(context())
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}/index.html"]
