"""CodeDeploy over real HTTP: deployments progress, change the resources, fail, roll back, stop and wait."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources as r

SAMPLE_APP = Path(__file__).resolve().parents[2] / "include" / "sample_app"
DONE = ("Succeeded", "Failed", "Stopped")
ECS_EVENTS = [
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
]


def new_task_definition(aws) -> str:
    template = json.loads((SAMPLE_APP / "taskdef.json").read_text())
    image = f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}:{uuid.uuid4().hex[:7]}"
    template["containerDefinitions"][0]["image"] = image
    return aws("ecs").register_task_definition(**template)["taskDefinition"]["taskDefinitionArn"]


def ecs_revision(task_definition: str) -> dict:
    content = (SAMPLE_APP / "appspec-ecs.yaml").read_text().replace("<TASK_DEFINITION>", task_definition)
    return {"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}


def lambda_revision(current: str, target: str, as_json: bool = False) -> dict:
    if as_json:
        content = json.dumps(
            {
                "version": 0.0,
                "Resources": [
                    {
                        r.LAMBDA_FUNCTION: {
                            "Type": "AWS::Lambda::Function",
                            "Properties": {
                                "Name": r.LAMBDA_FUNCTION,
                                "Alias": r.LAMBDA_ALIAS,
                                "CurrentVersion": current,
                                "TargetVersion": target,
                            },
                        }
                    }
                ],
            }
        )
    else:
        content = (
            (SAMPLE_APP / "appspec-lambda.yaml")
            .read_text()
            .replace("<CURRENT_VERSION>", current)
            .replace("<TARGET_VERSION>", target)
        )
    return {"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}


def service_task_definition(aws) -> str:
    return aws("ecs").describe_services(cluster=r.ECS_CLUSTER, services=[r.ECS_SERVICE])["services"][0][
        "taskDefinition"
    ]


def alias_version(aws, region: str = r.REGION) -> str:
    return aws("lambda", region).get_alias(FunctionName=r.LAMBDA_FUNCTION, Name=r.LAMBDA_ALIAS)["FunctionVersion"]


def other_version(version: str) -> str:
    return "2" if version == "1" else "1"


def deployment(codedeploy, deployment_id: str) -> dict:
    return codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]


def test_ecs_deployment_moves_the_service_to_the_new_task_definition(aws, wait_until):
    codedeploy = aws("codedeploy")
    before = service_task_definition(aws)
    task_definition = new_task_definition(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.ECS_APPLICATION, deploymentGroupName=r.ECS_GROUP, revision=ecs_revision(task_definition)
    )["deploymentId"]
    seen = set()
    info = wait_until(
        lambda: deployment(codedeploy, deployment_id), lambda d: seen.add(d["status"]) or d["status"] in DONE
    )
    assert {"Created", "InProgress"} & seen
    assert info["status"] == "Succeeded", info.get("errorInformation")
    assert info["computePlatform"] == "ECS"
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"
    assert info["completeTime"] > info["startTime"] >= info["createTime"]
    assert info["deploymentOverview"]["Succeeded"] == 1
    assert service_task_definition(aws) == task_definition != before

    targets = codedeploy.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
    assert targets == [f"{r.ECS_CLUSTER}:{r.ECS_SERVICE}"]
    target = codedeploy.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=targets)
    events = target["deploymentTargets"][0]["ecsTarget"]["lifecycleEvents"]
    assert [e["lifecycleEventName"] for e in events] == ECS_EVENTS
    assert {e["status"] for e in events} == {"Succeeded"}

    group = codedeploy.get_deployment_group(applicationName=r.ECS_APPLICATION, deploymentGroupName=r.ECS_GROUP)
    assert group["deploymentGroupInfo"]["targetRevision"] == ecs_revision(task_definition)
    assert group["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"] == deployment_id


def test_lambda_deployment_moves_the_alias_in_both_regions(aws, wait_until):
    started = {}
    for region in (r.REGION, r.SECOND_REGION):
        current = alias_version(aws, region)
        codedeploy = aws("codedeploy", region)
        started[region] = (
            codedeploy,
            other_version(current),
            codedeploy.create_deployment(
                applicationName=r.LAMBDA_APPLICATION,
                deploymentGroupName=r.LAMBDA_GROUP,
                revision=lambda_revision(current, other_version(current), as_json=region == r.SECOND_REGION),
            )["deploymentId"],
        )
    for region, (codedeploy, target, deployment_id) in started.items():
        info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] in DONE)
        assert info["status"] == "Succeeded", info.get("errorInformation")
        assert info["computePlatform"] == "Lambda"
        assert alias_version(aws, region) == target
    # The deployments are regional: each region lists only its own.
    codedeploy, _, deployment_id = started[r.SECOND_REGION]
    listed = codedeploy.list_deployments(
        applicationName=r.LAMBDA_APPLICATION, deploymentGroupName=r.LAMBDA_GROUP, includeOnlyStatuses=["Succeeded"]
    )["deployments"]
    assert deployment_id in listed and started[r.REGION][2] not in listed


def test_failed_deployment_rolls_back_and_leaves_the_service_as_it_was(aws, control, wait_until):
    control.set_fault("codedeploy", f"{r.ECS_APPLICATION}/{r.ECS_GROUP}", "fail")
    codedeploy = aws("codedeploy")
    before = service_task_definition(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.ECS_APPLICATION,
        deploymentGroupName=r.ECS_GROUP,
        revision=ecs_revision(new_task_definition(aws)),
    )["deploymentId"]
    info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] in DONE)

    assert info["status"] == "Failed"
    assert info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    assert "AfterAllowTestTraffic" in info["errorInformation"]["message"]
    assert service_task_definition(aws) == before
    rollback_id = info["rollbackInfo"]["rollbackDeploymentId"]
    rollback = deployment(codedeploy, rollback_id)
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == deployment_id

    target = codedeploy.get_deployment_target(deploymentId=deployment_id, targetId=f"{r.ECS_CLUSTER}:{r.ECS_SERVICE}")[
        "deploymentTarget"
    ]
    failed = [e for e in target["ecsTarget"]["lifecycleEvents"] if e["status"] == "Failed"]
    assert [e["lifecycleEventName"] for e in failed] == ["AfterAllowTestTraffic"]
    assert failed[0]["diagnostics"]["errorCode"] == "ScriptFailed"


def test_failure_after_traffic_shift_restores_the_alias(aws, control, wait_until):
    # Failing after AllowTraffic means the alias had already moved: the rollback must move it back.
    control.set_fault("codedeploy", r.LAMBDA_APPLICATION, "fail", event="AfterAllowTraffic")
    codedeploy = aws("codedeploy")
    current = alias_version(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.LAMBDA_APPLICATION,
        deploymentGroupName=r.LAMBDA_GROUP,
        revision=lambda_revision(current, other_version(current)),
    )["deploymentId"]
    info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] in DONE)
    assert info["status"] == "Failed"
    assert "AfterAllowTraffic" in info["errorInformation"]["message"]
    assert "rollbackDeploymentId" in info["rollbackInfo"]
    assert alias_version(aws) == current


def test_stop_deployment_with_rollback(aws, control, wait_until, deploy_seconds):
    control.set_fault("codedeploy", f"{r.LAMBDA_APPLICATION}/{r.LAMBDA_GROUP}", "hang")
    codedeploy = aws("codedeploy")
    current = alias_version(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.LAMBDA_APPLICATION,
        deploymentGroupName=r.LAMBDA_GROUP,
        revision=lambda_revision(current, other_version(current)),
    )["deploymentId"]
    wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] == "InProgress")
    time.sleep(deploy_seconds)  # the behaviour under test: a whole deployment's time later it still hangs
    assert deployment(codedeploy, deployment_id)["status"] == "InProgress"

    answer = codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    assert answer["status"] in ("Pending", "Succeeded")
    info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] in DONE)
    assert info["status"] == "Stopped"
    assert "rollbackDeploymentId" in info["rollbackInfo"]
    assert alias_version(aws) == current
    with pytest.raises(ClientError) as error:
        codedeploy.stop_deployment(deploymentId=deployment_id)
    assert error.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"


def test_ready_wait_until_continue_deployment(aws, wait_until, deploy_seconds):
    codedeploy = aws("codedeploy")
    group = "manual-cutover"
    existing = codedeploy.list_deployment_groups(applicationName=r.ECS_APPLICATION)["deploymentGroups"]
    if group not in existing:
        codedeploy.create_deployment_group(
            applicationName=r.ECS_APPLICATION,
            deploymentGroupName=group,
            serviceRoleArn=r.SERVICE_ROLE_ARN,
            deploymentConfigName="CodeDeployDefault.ECSAllAtOnce",
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "deploymentReadyOption": {"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": 60},
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
            },
            ecsServices=[{"serviceName": r.ECS_SERVICE, "clusterName": r.ECS_CLUSTER}],
        )
    task_definition = new_task_definition(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.ECS_APPLICATION, deploymentGroupName=group, revision=ecs_revision(task_definition)
    )["deploymentId"]
    with pytest.raises(ClientError) as error:
        codedeploy.continue_deployment(deploymentId=deployment_id, deploymentWaitType="READY_WAIT")
    assert error.value.response["Error"]["Code"] == "DeploymentIsNotInReadyStateException"

    wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] == "Ready")
    time.sleep(deploy_seconds)  # the behaviour under test: a whole deployment's time later it still waits
    info = deployment(codedeploy, deployment_id)
    assert info["status"] == "Ready" and info["deploymentOverview"]["Ready"] == 1
    assert service_task_definition(aws) != task_definition  # production traffic has not moved yet

    codedeploy.continue_deployment(deploymentId=deployment_id, deploymentWaitType="READY_WAIT")
    info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["status"] in DONE)
    assert info["status"] == "Succeeded"
    assert service_task_definition(aws) == task_definition


def test_ec2_blue_green_records_revision_and_explains_failures(aws, control, wait_until):
    control.set_fault("codedeploy", f"{r.EC2_APPLICATION}/{r.EC2_PRODUCTION_GROUP}", "fail")
    codedeploy = aws("codedeploy")
    revision = {
        "revisionType": "S3",
        "s3Location": {"bucket": r.ARTIFACT_BUCKET, "key": "webapp-build/x/app.zip", "bundleType": "zip"},
    }
    ids = {
        group: codedeploy.create_deployment(
            applicationName=r.EC2_APPLICATION, deploymentGroupName=group, revision=revision
        )["deploymentId"]
        for group in (r.EC2_STAGING_GROUP, r.EC2_PRODUCTION_GROUP)
    }
    staging, production = (
        wait_until(lambda i=i: deployment(codedeploy, i), lambda d: d["status"] in DONE) for i in ids.values()
    )

    assert staging["status"] == "Succeeded"
    group = codedeploy.get_deployment_group(applicationName=r.EC2_APPLICATION, deploymentGroupName=r.EC2_STAGING_GROUP)[
        "deploymentGroupInfo"
    ]
    assert group["targetRevision"] == revision

    assert production["status"] == "Failed"
    message = production["errorInformation"]["message"]
    assert "ValidateService" in message and "scripts/validate_service.sh" in message
    assert "rollbackInfo" in production
    targets = codedeploy.list_deployment_targets(deploymentId=ids[r.EC2_PRODUCTION_GROUP])["targetIds"]
    assert len(targets) == 2  # one per instance of the Auto Scaling group
    target = codedeploy.batch_get_deployment_targets(deploymentId=ids[r.EC2_PRODUCTION_GROUP], targetIds=targets[:1])[
        "deploymentTargets"
    ][0]["instanceTarget"]
    validate = next(e for e in target["lifecycleEvents"] if e["lifecycleEventName"] == "ValidateService")
    assert validate["status"] == "Failed"
    assert validate["diagnostics"]["scriptName"] == "scripts/validate_service.sh"

    listed = codedeploy.list_deployments(
        applicationName=r.EC2_APPLICATION, deploymentGroupName=r.EC2_PRODUCTION_GROUP, includeOnlyStatuses=["Failed"]
    )["deployments"]
    assert ids[r.EC2_PRODUCTION_GROUP] in listed and ids[r.EC2_STAGING_GROUP] not in listed
    batch = codedeploy.batch_get_deployments(deploymentIds=list(ids.values()))["deploymentsInfo"]
    assert {d["deploymentId"] for d in batch} == set(ids.values())


def test_throttled_group_refuses_some_calls(aws, control):
    control.set_fault("codedeploy", f"{r.ECS_APPLICATION}/{r.ECS_GROUP}", "throttle", rate=0.5)
    codedeploy = aws("codedeploy", retry=False)
    outcomes = []
    for _ in range(4):
        try:
            codedeploy.get_deployment_group(applicationName=r.ECS_APPLICATION, deploymentGroupName=r.ECS_GROUP)
            outcomes.append("ok")
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ThrottlingException"
            outcomes.append("throttled")
    assert outcomes == ["ok", "throttled", "ok", "throttled"]
    codedeploy.get_deployment_group(applicationName=r.LAMBDA_APPLICATION, deploymentGroupName=r.LAMBDA_GROUP)


def test_unknown_names_are_refused(aws):
    codedeploy = aws("codedeploy")
    with pytest.raises(ClientError) as error:
        codedeploy.create_deployment(
            applicationName=r.ECS_APPLICATION, deploymentGroupName="nope", revision=ecs_revision("webapp-web:1")
        )
    assert error.value.response["Error"]["Code"] == "DeploymentGroupDoesNotExistException"
    with pytest.raises(ClientError) as error:
        codedeploy.get_deployment(deploymentId="d-NOTTHERE1")
    assert error.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"


def test_termination_wait_ends_with_continue_deployment(aws, wait_until):
    codedeploy = aws("codedeploy")
    group = "keep-blue-fleet"
    if group not in codedeploy.list_deployment_groups(applicationName=r.ECS_APPLICATION)["deploymentGroups"]:
        codedeploy.create_deployment_group(
            applicationName=r.ECS_APPLICATION,
            deploymentGroupName=group,
            serviceRoleArn=r.SERVICE_ROLE_ARN,
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            blueGreenDeploymentConfiguration={
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
                "terminateBlueInstancesOnDeploymentSuccess": {
                    "action": "TERMINATE",
                    "terminationWaitTimeInMinutes": 60,
                },
            },
            ecsServices=[{"serviceName": r.ECS_SERVICE, "clusterName": r.ECS_CLUSTER}],
        )
    task_definition = new_task_definition(aws)
    deployment_id = codedeploy.create_deployment(
        applicationName=r.ECS_APPLICATION, deploymentGroupName=group, revision=ecs_revision(task_definition)
    )["deploymentId"]
    info = wait_until(lambda: deployment(codedeploy, deployment_id), lambda d: d["instanceTerminationWaitTimeStarted"])
    assert info["status"] == "InProgress"
    assert service_task_definition(aws) == task_definition  # traffic already on the new task set

    codedeploy.continue_deployment(deploymentId=deployment_id, deploymentWaitType="TERMINATION_WAIT")
    assert deployment(codedeploy, deployment_id)["status"] == "Succeeded"
