"""The catalogue's action types in real Airflow processes: compiled from a spec, run by workers, waited on
by the triggerer's shared poller, on the sandbox's CloudFormation, S3, ECS, Elastic Beanstalk, Lambda, Step
Functions and CodeBuild.

One run of tests/integration/pipelines/cat-every-type.yaml, whose actions read each other's outputs. Each
type's failure and stop are tested against the sandbox in tests/sandbox/test_sandbox_*.py.
"""

from __future__ import annotations

import pytest

from include.sandbox import resources as r
from tests.integration.helpers import aws_client, ti_states, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "cat-every-type"


def test_every_catalogue_type_runs_in_one_release(api, airflow_env):
    api.wait_for_dag(PIPELINE, timeout=240)
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    run = wait_for_run(api, PIPELINE, run_id, timeout=240)
    assert run["state"] == "success", ti_states(api, PIPELINE, run_id)

    def outputs(task_id: str) -> dict:
        return api.xcom(PIPELINE, run_id, task_id)

    stack = outputs("Infra.Stack")
    assert stack["StackStatus"] == "CREATE_COMPLETE" and stack["TopicArn"].endswith(":cat-every-type-events")
    ssm = aws_client(airflow_env, "ssm")
    assert ssm.get_parameter(Name="/cat-every-type/release")["Parameter"]["Value"] == run_id

    site = outputs("Deploy.Site")
    listed = aws_client(airflow_env, "s3").list_objects_v2(Bucket=r.ARTIFACT_BUCKET, Prefix=site["ObjectKey"])
    assert listed["KeyCount"] >= 1 and site["ObjectCount"] == str(listed["KeyCount"])  # variables are text

    worker = outputs("Deploy.Worker")
    service = aws_client(airflow_env, "ecs").describe_services(cluster=r.ECS_CLUSTER, services=[r.ECS_ROLLING_SERVICE])[
        "services"
    ][0]
    assert service["taskDefinition"] == worker["TaskDefinitionArn"]

    beanstalk = outputs("Deploy.Beanstalk")
    environment = aws_client(airflow_env, "elasticbeanstalk").describe_environments(
        ApplicationName=r.EB_APPLICATION, EnvironmentNames=[r.EB_ENVIRONMENT]
    )["Environments"][0]
    assert environment["VersionLabel"] == beanstalk["VersionLabel"]

    check = outputs("Verify.Check")
    assert (check["Service"], check["ExecutedVersion"]) == (beanstalk["VersionLabel"], "1")
    smoke = outputs("Verify.Smoke")
    assert smoke["Status"] == "SUCCEEDED" and smoke["topic"] == stack["TopicArn"]
    assert outputs("Verify.Commands")["TASK_DEFINITION"] == worker["TaskDefinitionArn"]
