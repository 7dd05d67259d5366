"""S3 and ECR source actions when AWS says no: the error names the call and the resource it was about."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.operators.source import EcrSourceOperator, S3SourceOperator

REGION = "us-east-1"
BUCKET = "release-artifacts"


@pytest.fixture(autouse=True)
def aws(moto_aws):
    """A versioned bucket with app.zip, and an empty ECR repository webapp."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="app.zip", Body=b"1")
    boto3.client("ecr", region_name=REGION).create_repository(repositoryName="webapp")


def context(source=None) -> dict:
    return {"dag_run": SimpleNamespace(conf={"source": source} if source else {}), "params": {}}


def failure(op, source=None) -> AwsCallError:
    with pytest.raises(AwsCallError) as raised:
        op.execute(context(source))
    return raised.value


def s3_source(bucket=BUCKET, key="app.zip"):
    return S3SourceOperator(task_id="Artifact", bucket=bucket, object_key=key)


def ecr_source(repository="webapp", tag="latest"):
    return EcrSourceOperator(task_id="Image", repository=repository, image_tag=tag)


def test_the_object_itself_resolves():
    # The S3 failures below are about what is missing, not about the set-up.
    assert s3_source().execute(context())["VersionId"]


def test_missing_bucket():
    err = failure(s3_source(bucket="no-such-bucket"))
    assert str(err).startswith("HeadObject on s3://no-such-bucket/app.zip failed: NoSuchBucket: ")


def test_missing_object():
    # HeadObject's 404 has no body: the code is all AWS says, the message names the object.
    err = failure(s3_source(key="missing.zip"))
    assert (err.operation, err.resource, err.code) == ("HeadObject", f"s3://{BUCKET}/missing.zip", "404")
    assert str(err) == f"HeadObject on s3://{BUCKET}/missing.zip failed: 404: Not Found"


def test_missing_object_version_names_the_version():
    err = failure(s3_source(), {"version_id": "no-such-version"})
    assert str(err).startswith(f"HeadObject on s3://{BUCKET}/app.zip version 'no-such-version' failed: ")


def test_missing_repository():
    err = failure(ecr_source(repository="no-such-repo"))
    assert str(err).startswith(
        "DescribeImages on ecr repository 'no-such-repo' image tag 'latest' failed: RepositoryNotFoundException: "
    )


def test_missing_image_tag():
    err = failure(ecr_source(tag="v9"))
    assert str(err).startswith(
        "DescribeImages on ecr repository 'webapp' image tag 'v9' failed: ImageNotFoundException: "
    )


def test_missing_image_digest():
    digest = "sha256:" + "2" * 64
    err = failure(ecr_source(), {"image_digest": digest})
    assert str(err).startswith(
        f"DescribeImages on ecr repository 'webapp' image {digest} failed: ImageNotFoundException: "
    )


def refusing(op, method: str, code: str, status: int) -> Stubber:
    """The operator's real client answering `method` with an AWS error (moto enforces no IAM, never throttles)."""
    stubber = Stubber(op.hook.conn)
    stubber.add_client_error(method, service_error_code=code, service_message="refused", http_status_code=status)
    return stubber


def test_s3_access_denied():
    op = s3_source()
    # A refused HEAD request has no body either: 403 is the code.
    with refusing(op, "head_object", "403", 403):
        err = failure(op)
    assert str(err) == f"HeadObject on s3://{BUCKET}/app.zip failed: 403: refused"


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_ecr_refusals(code):
    op = ecr_source()
    with refusing(op, "describe_images", code, 400):
        err = failure(op)
    assert err.code == code
    assert str(err) == f"DescribeImages on ecr repository 'webapp' image tag 'latest' failed: {code}: refused"


def test_repository_gone_between_the_two_calls():
    op = ecr_source()
    image = {"registryId": "123456789012", "repositoryName": "webapp", "imageDigest": "sha256:" + "c" * 64}
    with Stubber(op.hook.conn) as stubber:
        stubber.add_response("describe_images", {"imageDetails": [image]})
        stubber.add_client_error("describe_repositories", "RepositoryNotFoundException", "gone", 400)
        err = failure(op)
    assert str(err) == "DescribeRepositories on ecr repository 'webapp' failed: RepositoryNotFoundException: gone"
