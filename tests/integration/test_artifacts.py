"""Artifacts across regions in the real Airflow processes on the sandbox: a function's code from an S3 source in
us-east-1 becomes a Lambda version in eu-west-1 (tests/integration/pipelines/art-lambda.yaml). The example
release (test_example_release.py) follows source -> build -> server and ECS deployments."""

from __future__ import annotations

import time

import pytest

from include.sandbox import resources
from tests.integration.helpers import aws_client, code_sha256, function_behind_alias, function_zip, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "art-lambda"
FUNCTION = "art-tests-function"


@pytest.fixture(scope="module")
def function(airflow_env):
    """A function of this module's own in eu-west-1, version 1 behind alias `live`."""
    return function_behind_alias(airflow_env, FUNCTION)


def test_a_function_built_in_one_region_is_deployed_from_its_copy_in_the_other(airflow_env, api, function):
    api.wait_for_dag(PIPELINE, timeout=240)
    code = function_zip(f"release {time.time()}")
    s3 = aws_client(airflow_env, "s3")
    s3.put_object(Bucket=resources.ARTIFACT_BUCKET, Key="art-tests/function.zip", Body=code)

    # No revision: the source releases the object's latest version.
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    run = wait_for_run(api, PIPELINE, run_id, timeout=180)
    assert run["state"] == "success"

    written = api.xcom(PIPELINE, run_id, "Source.Code", key="artifacts")["outputs"]["FunctionCode"]
    read = api.xcom(PIPELINE, run_id, "Deploy.Lambda", key="artifacts")["inputs"]["FunctionCode"]
    assert written.startswith(f"s3://{resources.ARTIFACT_BUCKET}/runs/{PIPELINE}/")
    assert read.startswith(f"s3://{resources.SECOND_ARTIFACT_BUCKET}/runs/{PIPELINE}/")
    assert read.split("?")[0].rsplit("/", 2)[1:] == written.split("?")[0].rsplit("/", 2)[1:]  # same run folder
    copy = aws_client(airflow_env, "s3", resources.SECOND_REGION).get_object(
        Bucket=resources.SECOND_ARTIFACT_BUCKET, Key=read.split("?")[0].split("/", 3)[3]
    )
    assert copy["Body"].read() == code

    # The published version runs that code, and the alias moved to it.
    version = str(api.xcom(PIPELINE, run_id, "Deploy.Lambda")["LambdaVersion"])
    published = function.get_function(FunctionName=FUNCTION, Qualifier=version)
    assert published["Configuration"]["CodeSha256"] == code_sha256(code)
    assert version != "1"
    assert function.get_alias(FunctionName=FUNCTION, Name=resources.LAMBDA_ALIAS)["FunctionVersion"] == version
