"""Rolling a stage back in the real Airflow processes on the sandbox (tests/integration/pipelines/rb-release.yaml,
QUEUED): a failed Deploy rolls back by itself to the last release, before the run waiting at its door goes in; so
does a Deploy whose alarm goes off while it is watched after the stage succeeded; a rollback by hand through the
CLI to a chosen run; a run marked failed as a whole is not rolled back; a run started with a forged rollback conf
deploys nothing.

What was deployed is read from the sandbox: the Lambda version each run published (its code), the object the S3
deployment wrote, the bundle each CodeDeploy deployment to the EC2 servers installed, the task definition the
ECS service runs (its image), and the environment of each smoke build (the source version it was given).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from datetime import datetime

import pytest

from include.sandbox import resources
from include.sandbox.client import SandboxClient
from tests.integration.helpers import (
    aws_client,
    code_sha256,
    console_command,
    create_build_project,
    function_behind_alias,
    function_zip,
    put_alarm,
    ti_states,
    wait_for_run,
    wait_for_task_state,
)
from tests.integration.test_release_console import Session

pytestmark = pytest.mark.integration

PIPELINE = "rb-release"
FUNCTION = "rb-tests-function"
SOURCE_KEY = "rb-tests/function.zip"
DEPLOYED_KEY = "rb-tests/deployed/function.zip"
SMOKE_OK, SMOKE_FAIL, SMOKE_HANG = "rb-smoke-ok", "rb-smoke-fail", "rb-smoke-hang"
ALARM = "rb-health"  # Deploy's success condition watches it
# Deploy.EC2 (in place) and Deploy.ECS (blue/green) deploy to these, created here: not the example's.
EC2_APPLICATION, ECS_APPLICATION, DEPLOYMENT_GROUP = "rb-tests-ec2", "rb-tests-ecs", "production"
CLUSTER, SERVICE, TASK_FAMILY, CONTAINER = "rb-tests", "rb-tests-web", "rb-tests-web", "web"
IMAGE_REPOSITORY = f"{resources.ACCOUNT_ID}.dkr.ecr.{resources.REGION}.amazonaws.com/rb-tests-web"
DEPLOY_ACTIONS = ("Deploy.Lambda", "Deploy.Bucket", "Deploy.EC2", "Deploy.ECS")  # Deploy's run_order 1


def task_definition(image: str) -> dict:
    return {
        "family": TASK_FAMILY,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": resources.SERVICE_ROLE_ARN,
        "containerDefinitions": [
            {
                "name": CONTAINER,
                "image": image,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            }
        ],
    }


def release_bundle(marker: str) -> bytes:
    """One zip per release, as a build would make it: the function's code, the servers' appspec.yml, and
    CodePipeline's taskdef.json and imageDetail.json with an image of this release's own."""
    buffer = io.BytesIO(function_zip(marker))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("appspec.yml", "version: 0.0\nos: linux\nfiles:\n  - {source: /, destination: /opt/rb}\n")
        archive.writestr("taskdef.json", json.dumps(task_definition("<IMAGE1_NAME>")))
        tag = hashlib.sha256(marker.encode()).hexdigest()[:12]
        archive.writestr("imageDetail.json", json.dumps({"ImageURI": f"{IMAGE_REPOSITORY}:{tag}"}))
    return buffer.getvalue()


def bundle_image(bundle: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return json.loads(archive.read("imageDetail.json"))["ImageURI"]


@pytest.fixture(scope="module")
def world(airflow_env, api):
    """The function (version 1 behind `live`), the smoke projects (one fails, one hangs: sandbox faults), the
    ECS service (CODE_DEPLOY controller) on a baseline task definition, the CodeDeploy applications and groups."""
    api.wait_for_dag(PIPELINE, timeout=240)
    functions = function_behind_alias(airflow_env, FUNCTION)
    codebuild = aws_client(airflow_env, "codebuild")
    for project in (SMOKE_OK, SMOKE_FAIL, SMOKE_HANG):
        create_build_project(codebuild, project, "acme/rollback", "version: 0.2\nphases: {build: {commands: [make]}}\n")
    faults = {SMOKE_FAIL: {"mode": "fail"}, SMOKE_HANG: {"mode": "hang"}}
    SandboxClient(airflow_env.sandbox_url).set_faults({"codebuild": faults})
    cloudwatch = aws_client(airflow_env, "cloudwatch")
    put_alarm(cloudwatch, ALARM, "OK")

    ecs, codedeploy = aws_client(airflow_env, "ecs"), aws_client(airflow_env, "codedeploy")
    ecs.create_cluster(clusterName=CLUSTER)
    baseline = ecs.register_task_definition(**task_definition(f"{IMAGE_REPOSITORY}:baseline"))["taskDefinition"]
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=baseline["taskDefinitionArn"],
        desiredCount=1,
        launchType="FARGATE",
        deploymentController={"type": "CODE_DEPLOY"},
    )
    codedeploy.create_application(applicationName=EC2_APPLICATION, computePlatform="Server")
    codedeploy.create_deployment_group(
        applicationName=EC2_APPLICATION,
        deploymentGroupName=DEPLOYMENT_GROUP,
        serviceRoleArn=resources.SERVICE_ROLE_ARN,
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
        ec2TagFilters=[{"Key": "app", "Value": "rb-tests", "Type": "KEY_AND_VALUE"}],
    )
    codedeploy.create_application(applicationName=ECS_APPLICATION, computePlatform="ECS")
    codedeploy.create_deployment_group(
        applicationName=ECS_APPLICATION,
        deploymentGroupName=DEPLOYMENT_GROUP,
        serviceRoleArn=resources.SERVICE_ROLE_ARN,
        deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
        deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        blueGreenDeploymentConfiguration={
            "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
            "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
        },
        ecsServices=[{"serviceName": SERVICE, "clusterName": CLUSTER}],
    )
    return {
        "lambda": functions,
        "s3": aws_client(airflow_env, "s3"),
        "codebuild": codebuild,
        "cloudwatch": cloudwatch,
        "ecs": ecs,
        "codedeploy": codedeploy,
    }


def release(api, world, code: bytes, **conf) -> str:
    """Put new code at the source's key and start a run (its Source reads the object's latest version)."""
    world["s3"].put_object(Bucket=resources.ARTIFACT_BUCKET, Key=SOURCE_KEY, Body=code)
    return api.trigger(PIPELINE, conf=conf or None)["dag_run_id"]


def live_code(api, world, run_id: str) -> str:
    """The code of the Lambda version `run_id` published and moved the alias to."""
    version = str(api.xcom(PIPELINE, run_id, "Deploy.Lambda")["LambdaVersion"])
    return world["lambda"].get_function(FunctionName=FUNCTION, Qualifier=version)["Configuration"]["CodeSha256"]


def smoke_build(api, world, run_id: str) -> dict:
    build_id = api.xcom(PIPELINE, run_id, "Deploy.Smoke")["BuildId"]
    return world["codebuild"].batch_get_builds(ids=[build_id])["builds"][0]


def bucket_history(world) -> list[bytes]:
    s3 = world["s3"]
    versions = s3.list_object_versions(Bucket=resources.ARTIFACT_BUCKET, Prefix=DEPLOYED_KEY).get("Versions", [])
    return [
        s3.get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY, VersionId=v["VersionId"])["Body"].read()
        for v in reversed(versions)  # S3 lists the newest first
    ]


def deployment_ids(world, application: str, *statuses: str) -> list[str]:
    """The deployments to the application's group (in those statuses), newest first."""
    return world["codedeploy"].list_deployments(
        applicationName=application, deploymentGroupName=DEPLOYMENT_GROUP, includeOnlyStatuses=list(statuses)
    )["deployments"]


def succeeded_deployments(world, application: str, count: int) -> list[dict]:
    """The last `count` successful deployments to the application's group, oldest first."""
    ids = deployment_ids(world, application, "Succeeded")[:count]
    return [world["codedeploy"].get_deployment(deploymentId=i)["deploymentInfo"] for i in reversed(ids)]


def installed_bundle(world, deployment: dict) -> bytes:
    """The bundle an EC2 deployment installed: the S3 object version its revision names."""
    location = deployment["revision"]["s3Location"]
    pinned = {"VersionId": location["version"]} if location.get("version") else {}
    return world["s3"].get_object(Bucket=location["bucket"], Key=location["key"], **pinned)["Body"].read()


def server_history(world, count: int) -> list[bytes]:
    return [installed_bundle(world, d) for d in succeeded_deployments(world, EC2_APPLICATION, count)]


def live_server_bundle(world) -> bytes:
    """What the EC2 servers run: the bundle of the group's latest successful deployment."""
    group = world["codedeploy"].get_deployment_group(
        applicationName=EC2_APPLICATION, deploymentGroupName=DEPLOYMENT_GROUP
    )["deploymentGroupInfo"]
    deployment_id = group["lastSuccessfulDeployment"]["deploymentId"]
    return installed_bundle(world, world["codedeploy"].get_deployment(deploymentId=deployment_id)["deploymentInfo"])


def containers(world, task_definition_arn: str) -> list[dict]:
    return world["ecs"].describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"][
        "containerDefinitions"
    ]


def service_history(world, count: int) -> list[str]:
    """The images the ECS group's last `count` successful deployments moved the service to, oldest first."""
    images = []
    for deployment in succeeded_deployments(world, ECS_APPLICATION, count):
        appspec = json.loads(deployment["revision"]["appSpecContent"]["content"])
        arn = appspec["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"]
        images.append(containers(world, arn)[0]["image"])
    return images


def service_task_definition(world) -> str:
    """The task definition the ECS service runs."""
    return world["ecs"].describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]


def live_containers(world) -> list[dict]:
    return containers(world, service_task_definition(world))


def deployed_containers(api, world, run_id: str) -> list[dict]:
    """The containers of the task definition a run's Deploy.ECS registered and deployed."""
    return containers(world, api.xcom(PIPELINE, run_id, "Deploy.ECS")["TaskDefinitionArn"])


def when(ti: dict, key: str) -> datetime:
    return datetime.fromisoformat(ti[key].replace("Z", "+00:00"))


def task(api, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(PIPELINE, run_id) if ti["task_id"] == task_id)


def test_a_failed_or_alarming_stage_rolls_back_to_the_last_release_before_the_next_run_goes_in(api, world, airflow_env):
    first_code, failing_code, next_code = (
        release_bundle(f"{label} {time.time()}") for label in ("one", "two", "three")
    )
    first = release(api, world, first_code)
    assert wait_for_run(api, PIPELINE, first, timeout=240)["state"] == "success"
    first_version = api.xcom(PIPELINE, first, "Source.Code")["VersionId"]

    # The second run's smoke test fails; a third run, with newer code, waits at Deploy's door meanwhile.
    failing = release(api, world, failing_code, smoke_project=SMOKE_FAIL)
    wait_for_task_state(api, PIPELINE, failing, "Source.Code", {"success"}, timeout=120)
    third = release(api, world, next_code)

    assert wait_for_run(api, PIPELINE, failing, timeout=300)["state"] == "failed"
    states = ti_states(api, PIPELINE, failing)
    assert (states["Deploy.Smoke"], states["Deploy.Rollback"]) == ("failed", "success"), states
    started = api.xcom(PIPELINE, failing, "Deploy.Rollback")
    assert started["TargetRunId"] == first and started["Result"] == "Succeeded"
    rollback = started["RollbackRunId"]

    # The rollback run: only Deploy ran, with the first run's artifact, variables and outputs.
    run = wait_for_run(api, PIPELINE, rollback, timeout=60)
    assert run["state"] == "success"
    assert f"Automatic rollback of stage Deploy to run {first}" in (run.get("note") or "")
    states = ti_states(api, PIPELINE, rollback)
    assert states["Source.Code"] == "skipped" and states["Source.Enter"] == "skipped"
    # It went in on the failed run's hold, not through the door the third run was waiting at.
    assert states["Deploy.Enter"] == "skipped" and states["Deploy.Rollback"] == "skipped"
    assert {states[t] for t in (*DEPLOY_ACTIONS, "Deploy.Smoke")} == {"success"}
    assert live_code(api, world, rollback) == code_sha256(first_code)
    # The service got the first run's task definition again (its image), the servers the first run's bundle.
    assert deployed_containers(api, world, rollback) == deployed_containers(api, world, first)
    assert deployed_containers(api, world, rollback)[0]["image"] == bundle_image(first_code)
    rollback_deployment = api.xcom(PIPELINE, rollback, "Deploy.EC2")["DeploymentId"]
    deployment = world["codedeploy"].get_deployment(deploymentId=rollback_deployment)["deploymentInfo"]
    assert installed_bundle(world, deployment) == first_code
    smoke = smoke_build(api, world, rollback)
    assert smoke["projectName"] == SMOKE_OK  # the first run's variables
    assert {"name": "SOURCE_VERSION", "value": first_version, "type": "PLAINTEXT"} in smoke["environment"][
        "environmentVariables"
    ]
    read = api.xcom(PIPELINE, rollback, "Deploy.Lambda", key="artifacts")["inputs"]["FunctionCode"]
    assert "rollback__Deploy__" in read  # a copy in the rollback run's own folder

    # Then the third run deployed its code: after the rollback, never beside it.
    assert wait_for_run(api, PIPELINE, third, timeout=240)["state"] == "success"
    assert when(task(api, third, "Deploy.Lambda"), "start_date") >= when(
        task(api, rollback, "Deploy.Smoke"), "end_date"
    )
    assert live_code(api, world, third) == code_sha256(next_code)
    # The bucket's history (a versioned bucket), oldest first: each deployment in turn.
    assert bucket_history(world)[-4:] == [first_code, failing_code, first_code, next_code]
    # So were the servers' and the service's: the first release was live again until the third went in.
    assert server_history(world, 4) == [first_code, failing_code, first_code, next_code]
    assert service_history(world, 4) == [bundle_image(c) for c in (first_code, failing_code, first_code, next_code)]

    assert api.xcom(PIPELINE, third, "Deploy.SuccessConditions")["Result"] == "SUCCEEDED"

    # The next release deploys, then its alarm goes off while it is watched (for up to 5 minutes): back to the
    # third run, the latest in which the stage and its success conditions succeeded.
    bad_code = release_bundle(f"bad {time.time()}")
    bad = release(api, world, bad_code, watch_minutes="5")
    wait_for_task_state(api, PIPELINE, bad, "Deploy.SuccessConditions", {"deferred"}, timeout=240)
    assert live_code(api, world, bad) == code_sha256(bad_code)
    assert live_server_bundle(world) == bad_code
    assert live_containers(world)[0]["image"] == bundle_image(bad_code)
    try:
        world["cloudwatch"].set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx above 1")
        assert wait_for_run(api, PIPELINE, bad, timeout=120)["state"] == "failed"
    finally:
        world["cloudwatch"].set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test over")
    states = ti_states(api, PIPELINE, bad)
    assert {states[t] for t in (*DEPLOY_ACTIONS, "Deploy.Smoke")} == {"success"}
    assert (states["Deploy.SuccessConditions"], states["Deploy.Rollback"]) == ("failed", "success"), states
    watched = api.xcom(PIPELINE, bad, "Deploy.SuccessConditions")
    assert watched["Result"] == "FAILED" and watched["WatchedSeconds"] < 120
    assert watched["Rules"][0]["detail"] == f"alarm '{ALARM}' is in state ALARM"
    started = api.xcom(PIPELINE, bad, "Deploy.Rollback")
    assert (started["TargetRunId"], started["Result"]) == (third, "Succeeded")
    # The rollback run deployed the third release again, and was not watched itself.
    alarm_rollback = started["RollbackRunId"]
    assert wait_for_run(api, PIPELINE, alarm_rollback, timeout=60)["state"] == "success"
    assert ti_states(api, PIPELINE, alarm_rollback)["Deploy.SuccessConditions"] == "skipped"
    assert live_code(api, world, alarm_rollback) == code_sha256(next_code)
    assert world["s3"].get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY)["Body"].read() == next_code
    assert live_server_bundle(world) == next_code
    assert live_containers(world) == deployed_containers(api, world, third)

    # By hand, through the CLI: back to the first run, through the stage's door, as a run of its own.
    refused = console_command(airflow_env, "developer", "rollback", PIPELINE, "Deploy", "--reason", "bad release")
    assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
    not_deployed = console_command(
        airflow_env, "release-manager", "rollback", PIPELINE, "Deploy", "--to", failing, "--reason", "x"
    )
    assert not_deployed.returncode == 1 and f"stage Deploy did not succeed in run {failing}" in not_deployed.stderr
    by_hand = console_command(
        airflow_env, "release-manager", "rollback", PIPELINE, "Deploy", "--to", first, "--reason", "three is slow"
    )
    assert by_hand.returncode == 0, by_hand.stderr
    manual = by_hand.stdout.split("rollback run ")[1].split(" started")[0]
    run = wait_for_run(api, PIPELINE, manual, timeout=240)
    assert run["state"] == "success"
    assert run["note"] == f"Rollback of stage Deploy to run {first} by release-manager: three is slow"
    assert ti_states(api, PIPELINE, manual)["Deploy.Enter"] == "success"
    assert live_code(api, world, manual) == code_sha256(first_code)
    assert world["s3"].get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY)["Body"].read() == first_code
    assert live_server_bundle(world) == first_code
    assert live_containers(world) == deployed_containers(api, world, first)

    # The console's run history tells rollbacks apart.
    console = Session(airflow_env, "developer")
    history = console.get(f"/releases/api/pipelines/{PIPELINE}/runs", started_by="rollback").json()
    assert {r["run_id"] for r in history["runs"]} == {rollback, alarm_rollback, manual}
    assert all(r["started_by"] == "rollback" for r in history["runs"])


def test_a_run_marked_failed_is_not_rolled_back_and_a_forged_rollback_to_it_deploys_nothing(api, world):
    # Airflow leaves a run with a teardown (the Rollback task) still to run unset, to decide later from its
    # last tasks, which the marking skipped: the gate ends it failed and skips its Rollback.
    run_id = release(api, world, release_bundle(f"stopped {time.time()}"), smoke_project=SMOKE_HANG)
    wait_for_task_state(api, PIPELINE, run_id, "Deploy.Smoke", {"deferred"}, timeout=240)
    api.request("PATCH", f"/dags/{PIPELINE}/dagRuns/{run_id}", json={"state": "failed"})
    assert wait_for_run(api, PIPELINE, run_id, timeout=60)["state"] == "failed"
    states = ti_states(api, PIPELINE, run_id)
    assert (states["Deploy.Smoke"], states["Deploy.Rollback"]) == ("failed", "skipped"), states
    runs = api.request("GET", f"/dags/{PIPELINE}/dagRuns", params={"limit": 100})["dag_runs"]
    assert not [r for r in runs if r["dag_run_id"].startswith(f"rollback__Deploy__{run_id}")]

    # Someone who may trigger runs names it as the run to go back to: its Deploy never succeeded.
    before = world["lambda"].get_alias(FunctionName=FUNCTION, Name=resources.LAMBDA_ALIAS)["FunctionVersion"]
    deployments_before = {app: deployment_ids(world, app) for app in (EC2_APPLICATION, ECS_APPLICATION)}
    task_definition_before = service_task_definition(world)
    forged = api.trigger(PIPELINE, conf={"rollback": {"stage": "Deploy", "target_run_id": run_id}})["dag_run_id"]
    assert wait_for_run(api, PIPELINE, forged, timeout=180)["state"] == "failed"
    states = ti_states(api, PIPELINE, forged)
    assert states["Deploy.Lambda"] == "failed" and states["Deploy.Bucket"] == "failed", states
    assert {states[t] for t in DEPLOY_ACTIONS} == {"failed"}, states
    assert world["lambda"].get_alias(FunctionName=FUNCTION, Name=resources.LAMBDA_ALIAS)["FunctionVersion"] == before
    assert {app: deployment_ids(world, app) for app in deployments_before} == deployments_before
    assert service_task_definition(world) == task_definition_before
    log = api.task_log(PIPELINE, forged, "Deploy.Lambda")
    assert f"its actions did not all succeed in run {run_id}" in log
