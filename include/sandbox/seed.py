"""Create, over HTTP with boto3, everything the example release pipeline needs.

    python -m include.sandbox.seed --endpoint-url http://127.0.0.1:5055

Idempotent: each resource is looked up first and only created when missing, so
running it twice (or against a sandbox that already ran a release) changes nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError

from include.sandbox import resources as r
from include.sandbox.common import client
from include.sandbox.events import seed_events

SAMPLE_APP = Path(__file__).resolve().parent.parent / "sample_app"
ECS_BLUE_TARGET_GROUP = "webapp-ecs-blue"
ECS_GREEN_TARGET_GROUP = "webapp-ecs-green"
EC2_TARGET_GROUP = "webapp-ec2"
LOAD_BALANCER = "webapp-alb"
LAUNCH_TEMPLATE = "webapp-lt"
PROD_LISTENER_PORT = 80
TEST_LISTENER_PORT = 8443
TRUSTED_SERVICES = ["codebuild", "codedeploy", "lambda", "ecs-tasks", "ec2", "states", "cloudformation"]


def _exists(call, missing: tuple[str, ...]) -> bool:
    """True when the describe call succeeds, False on one of the 'not found' codes."""
    try:
        call()
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] in missing:
            return False
        raise


def seed(endpoint_url: str) -> dict:
    """Create the example's resources; returns the main ARNs and ids."""
    out: dict = {}
    _bucket(endpoint_url)
    _role(endpoint_url)
    _ecr(endpoint_url)
    _codebuild(endpoint_url)
    network = _network(endpoint_url)
    out.update(network)
    _autoscaling(endpoint_url, network)
    out["ecs_task_definition"] = _ecs(endpoint_url, network)
    out["ecs_rolling_task_definition"] = _ecs_rolling(endpoint_url, network)
    for region in (r.REGION, r.SECOND_REGION):
        _lambda(endpoint_url, region)
    _release_check(endpoint_url)
    _codedeploy(endpoint_url, network)
    _stepfunctions(endpoint_url)
    _elasticbeanstalk(endpoint_url)
    out["source_events_queue_url"] = seed_events(endpoint_url)
    # Last on purpose: the sandbox's health reports "seeded" once this subscription exists.
    out["inbox_queue_url"] = _notifications(endpoint_url)
    return out


def _bucket(url: str) -> None:
    for bucket, region in ((r.ARTIFACT_BUCKET, r.REGION), (r.SECOND_ARTIFACT_BUCKET, r.SECOND_REGION)):
        s3 = client("s3", url, region)
        if not _exists(lambda s3=s3, bucket=bucket: s3.head_bucket(Bucket=bucket), ("404", "NoSuchBucket")):
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=bucket, **where)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _role(url: str) -> None:
    iam = client("iam", url)
    name = r.SERVICE_ROLE_ARN.rsplit("/", 1)[1]
    if not _exists(lambda: iam.get_role(RoleName=name), ("NoSuchEntity",)):
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": [f"{s}.amazonaws.com" for s in TRUSTED_SERVICES]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Service role for the example release's builds, deployments and functions",
        )
    # Inline, since moto does not load AWS managed policies by default; putting it again replaces it.
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=name, PolicyName="release-service", PolicyDocument=json.dumps(policy))


def _ecr(url: str) -> None:
    ecr = client("ecr", url)
    if not _exists(
        lambda: ecr.describe_repositories(repositoryNames=[r.ECR_REPOSITORY]), ("RepositoryNotFoundException",)
    ):
        ecr.create_repository(repositoryName=r.ECR_REPOSITORY)


def _codebuild(url: str) -> None:
    cb = client("codebuild", url)
    existing = {p["name"] for p in cb.batch_get_projects(names=[r.BUILD_PROJECT, r.TEST_PROJECT])["projects"]}
    environment = {
        "type": "LINUX_CONTAINER",
        "image": "aws/codebuild/standard:7.0",
        "computeType": "BUILD_GENERAL1_SMALL",
        "privilegedMode": True,  # docker build needs it
        "environmentVariables": [
            {"name": "ECR_REPOSITORY", "value": r.ECR_REPOSITORY, "type": "PLAINTEXT"},
            {"name": "ARTIFACT_BUCKET", "value": r.ARTIFACT_BUCKET, "type": "PLAINTEXT"},
        ],
    }
    projects = {
        r.BUILD_PROJECT: ("buildspec.yml", {"name": "app.zip", "packaging": "ZIP"}),
        r.TEST_PROJECT: ("buildspec-integration.yml", {"name": "test-output", "packaging": "NONE"}),
    }
    if r.COMMANDS_PROJECT not in {p["name"] for p in cb.batch_get_projects(names=[r.COMMANDS_PROJECT])["projects"]}:
        # No source and no artifacts: each compute.commands action brings its commands as a buildspec override.
        cb.create_project(
            name=r.COMMANDS_PROJECT,
            # moto asks even a NO_SOURCE project for a location; AWS does not need one.
            source={
                "type": "NO_SOURCE",
                "location": "none",
                "buildspec": "version: 0.2\nphases:\n  build:\n    commands:\n      - 'true'\n",
            },
            artifacts={"type": "NO_ARTIFACTS"},
            environment={k: v for k, v in environment.items() if k != "privilegedMode"},
            serviceRole=r.SERVICE_ROLE_ARN,
            timeoutInMinutes=30,
        )
    for name, (buildspec, artifact) in projects.items():
        if name in existing:
            continue
        cb.create_project(
            name=name,
            source={
                "type": "GITHUB",
                "location": "https://github.com/example/webapp.git",
                "buildspec": (SAMPLE_APP / buildspec).read_text(),
            },
            sourceVersion="refs/heads/main",
            artifacts={
                "type": "S3",
                "location": r.ARTIFACT_BUCKET,
                "path": name,
                "namespaceType": "BUILD_ID",
                **artifact,
            },
            environment=environment,
            serviceRole=r.SERVICE_ROLE_ARN,
            timeoutInMinutes=30,
            logsConfig={"cloudWatchLogs": {"status": "ENABLED", "groupName": f"/aws/codebuild/{name}"}},
        )


def _network(url: str) -> dict:
    """Default VPC, subnets, and the load balancer with the blue/green target groups."""
    ec2 = client("ec2", url)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    security_group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    elb = client("elbv2", url)
    groups = {}
    for name, target_type, port in (
        (ECS_BLUE_TARGET_GROUP, "ip", r.ECS_CONTAINER_PORT),
        (ECS_GREEN_TARGET_GROUP, "ip", r.ECS_CONTAINER_PORT),
        (EC2_TARGET_GROUP, "instance", 8080),
    ):
        try:
            groups[name] = elb.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "TargetGroupNotFound":
                raise
            groups[name] = elb.create_target_group(
                Name=name, Protocol="HTTP", Port=port, VpcId=vpc, TargetType=target_type, HealthCheckPath="/health"
            )["TargetGroups"][0]["TargetGroupArn"]
    try:
        balancer = elb.describe_load_balancers(Names=[LOAD_BALANCER])["LoadBalancers"][0]["LoadBalancerArn"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "LoadBalancerNotFound":
            raise
        balancer = elb.create_load_balancer(
            Name=LOAD_BALANCER, Subnets=subnets[:2], Scheme="internet-facing", Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]
    listeners = {
        lsn["Port"]: lsn["ListenerArn"] for lsn in elb.describe_listeners(LoadBalancerArn=balancer)["Listeners"]
    }
    for port, group in ((PROD_LISTENER_PORT, ECS_BLUE_TARGET_GROUP), (TEST_LISTENER_PORT, ECS_GREEN_TARGET_GROUP)):
        if port not in listeners:
            listeners[port] = elb.create_listener(
                LoadBalancerArn=balancer,
                Protocol="HTTP",
                Port=port,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[group]}],
            )["Listeners"][0]["ListenerArn"]
    return {
        "vpc_id": vpc,
        "subnet_ids": subnets,
        "security_group_id": security_group,
        "target_groups": groups,
        "load_balancer": balancer,
        "prod_listener": listeners[PROD_LISTENER_PORT],
        "test_listener": listeners[TEST_LISTENER_PORT],
    }


def _autoscaling(url: str, network: dict) -> None:
    ec2 = client("ec2", url)
    try:
        ec2.describe_launch_templates(LaunchTemplateNames=[LAUNCH_TEMPLATE])
    except ClientError as error:
        if "NotFound" not in error.response["Error"]["Code"]:
            raise
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.create_launch_template(
            LaunchTemplateName=LAUNCH_TEMPLATE, LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
        )
    autoscaling = client("autoscaling", url)
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[r.EC2_AUTOSCALING_GROUP])
    if not found["AutoScalingGroups"]:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=r.EC2_AUTOSCALING_GROUP,
            LaunchTemplate={"LaunchTemplateName": LAUNCH_TEMPLATE, "Version": "$Latest"},
            MinSize=2,
            MaxSize=4,
            DesiredCapacity=2,
            VPCZoneIdentifier=",".join(network["subnet_ids"][:2]),
            TargetGroupARNs=[network["target_groups"][EC2_TARGET_GROUP]],
        )


def _awsvpc(network: dict) -> dict:
    return {
        "awsvpcConfiguration": {
            "subnets": network["subnet_ids"][:2],
            "securityGroups": [network["security_group_id"]],
            "assignPublicIp": "DISABLED",
        }
    }


def _ecs(url: str, network: dict) -> str:
    ecs = client("ecs", url)
    ecs.create_cluster(clusterName=r.ECS_CLUSTER)  # idempotent in ECS
    definitions = ecs.list_task_definitions(familyPrefix=r.ECS_TASK_FAMILY, sort="DESC")["taskDefinitionArns"]
    if definitions:
        task_definition = definitions[0]
    else:
        template = json.loads((SAMPLE_APP / "taskdef.json").read_text())
        image = f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}:initial"
        for container in template["containerDefinitions"]:
            container["image"] = image
        task_definition = ecs.register_task_definition(**template)["taskDefinition"]["taskDefinitionArn"]
    services = ecs.describe_services(cluster=r.ECS_CLUSTER, services=[r.ECS_SERVICE])["services"]
    if not [s for s in services if s["status"] == "ACTIVE"]:
        ecs.create_service(
            cluster=r.ECS_CLUSTER,
            serviceName=r.ECS_SERVICE,
            taskDefinition=task_definition,
            desiredCount=2,
            launchType="FARGATE",
            deploymentController={"type": "CODE_DEPLOY"},
            loadBalancers=[
                {
                    "targetGroupArn": network["target_groups"][ECS_BLUE_TARGET_GROUP],
                    "containerName": r.ECS_CONTAINER,
                    "containerPort": r.ECS_CONTAINER_PORT,
                }
            ],
            networkConfiguration=_awsvpc(network),
        )
    return task_definition


def _ecs_rolling(url: str, network: dict) -> str:
    """The rolling-update service (deployment controller ECS) deploy.ecs deploys to."""
    ecs = client("ecs", url)
    definitions = ecs.list_task_definitions(familyPrefix=r.ECS_ROLLING_TASK_FAMILY, sort="DESC")["taskDefinitionArns"]
    if definitions:
        task_definition = definitions[0]
    else:
        template = json.loads((SAMPLE_APP / "taskdef.json").read_text())
        template["family"] = r.ECS_ROLLING_TASK_FAMILY
        [container] = template["containerDefinitions"]
        container.update(name=r.ECS_ROLLING_CONTAINER, command=["python", "-m", "webapp.worker"], portMappings=[])
        container["image"] = f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}:initial"
        task_definition = ecs.register_task_definition(**template)["taskDefinition"]["taskDefinitionArn"]
    services = ecs.describe_services(cluster=r.ECS_CLUSTER, services=[r.ECS_ROLLING_SERVICE])["services"]
    if not [s for s in services if s["status"] == "ACTIVE"]:
        ecs.create_service(
            cluster=r.ECS_CLUSTER,
            serviceName=r.ECS_ROLLING_SERVICE,
            taskDefinition=task_definition,
            desiredCount=2,
            launchType="FARGATE",
            deploymentController={"type": "ECS"},
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
            networkConfiguration=_awsvpc(network),
        )
    return task_definition


def _lambda_zip(marker: str, folder: str = "lambda") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((SAMPLE_APP / folder).glob("*.py")):
            archive.writestr(path.name, path.read_text())
        archive.writestr("RELEASE", marker)  # makes each published version's code differ
    return buffer.getvalue()


def _lambda(url: str, region: str) -> None:
    lam = client("lambda", url, region)
    if not _exists(lambda: lam.get_function(FunctionName=r.LAMBDA_FUNCTION), ("ResourceNotFoundException",)):
        lam.create_function(
            FunctionName=r.LAMBDA_FUNCTION,
            Runtime="python3.12",
            Role=r.SERVICE_ROLE_ARN,
            Handler="handler.handler",
            Code={"ZipFile": _lambda_zip("1")},
            Description="webapp API",
            Timeout=10,
            MemorySize=256,
        )
    versions = {v["Version"] for v in lam.list_versions_by_function(FunctionName=r.LAMBDA_FUNCTION)["Versions"]}
    for version in ("1", "2"):
        if version not in versions:
            lam.update_function_code(FunctionName=r.LAMBDA_FUNCTION, ZipFile=_lambda_zip(version))
            lam.publish_version(FunctionName=r.LAMBDA_FUNCTION, Description=f"release {version}")
    if not _exists(
        lambda: lam.get_alias(FunctionName=r.LAMBDA_FUNCTION, Name=r.LAMBDA_ALIAS), ("ResourceNotFoundException",)
    ):
        lam.create_alias(FunctionName=r.LAMBDA_FUNCTION, Name=r.LAMBDA_ALIAS, FunctionVersion="1")


def _release_check(url: str) -> None:
    lam = client("lambda", url)
    if not _exists(lambda: lam.get_function(FunctionName=r.RELEASE_CHECK_FUNCTION), ("ResourceNotFoundException",)):
        lam.create_function(
            FunctionName=r.RELEASE_CHECK_FUNCTION,
            Runtime="python3.12",
            Role=r.SERVICE_ROLE_ARN,
            Handler="handler.handler",
            Code={"ZipFile": _lambda_zip("1", "release_check")},
            Description="checks a release for invoke.lambda actions",
            Timeout=5,
        )
    if not _exists(
        lambda: lam.get_alias(FunctionName=r.RELEASE_CHECK_FUNCTION, Name=r.LAMBDA_ALIAS),
        ("ResourceNotFoundException",),
    ):
        version = lam.publish_version(FunctionName=r.RELEASE_CHECK_FUNCTION, Description="release 1")["Version"]
        lam.create_alias(FunctionName=r.RELEASE_CHECK_FUNCTION, Name=r.LAMBDA_ALIAS, FunctionVersion=version)


def _codedeploy(url: str, network: dict) -> None:
    rollback = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    blue_green = {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"}
    ec2_blue_green = {
        "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
        "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
        "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
    }
    ec2_group = {
        "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
        "deploymentStyle": blue_green,
        "blueGreenDeploymentConfiguration": ec2_blue_green,
        "autoScalingGroups": [r.EC2_AUTOSCALING_GROUP],
        "loadBalancerInfo": {"targetGroupInfoList": [{"name": EC2_TARGET_GROUP}]},
    }
    ecs_group = {
        "deploymentConfigName": "CodeDeployDefault.ECSAllAtOnce",
        "deploymentStyle": blue_green,
        "blueGreenDeploymentConfiguration": {
            "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
            "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
        },
        "ecsServices": [{"serviceName": r.ECS_SERVICE, "clusterName": r.ECS_CLUSTER}],
        "loadBalancerInfo": {
            "targetGroupPairInfoList": [
                {
                    "targetGroups": [{"name": ECS_BLUE_TARGET_GROUP}, {"name": ECS_GREEN_TARGET_GROUP}],
                    "prodTrafficRoute": {"listenerArns": [network["prod_listener"]]},
                    "testTrafficRoute": {"listenerArns": [network["test_listener"]]},
                }
            ]
        },
        "autoRollbackConfiguration": rollback,
    }
    lambda_group = {
        "deploymentConfigName": "CodeDeployDefault.LambdaAllAtOnce",
        "deploymentStyle": blue_green,
        "autoRollbackConfiguration": rollback,
    }
    plan = [
        (r.REGION, r.EC2_APPLICATION, "Server", r.EC2_STAGING_GROUP, ec2_group),
        (
            r.REGION,
            r.EC2_APPLICATION,
            "Server",
            r.EC2_PRODUCTION_GROUP,
            {**ec2_group, "autoRollbackConfiguration": rollback},
        ),
        (r.REGION, r.ECS_APPLICATION, "ECS", r.ECS_GROUP, ecs_group),
        (r.REGION, r.LAMBDA_APPLICATION, "Lambda", r.LAMBDA_GROUP, lambda_group),
        (r.SECOND_REGION, r.LAMBDA_APPLICATION, "Lambda", r.LAMBDA_GROUP, lambda_group),
    ]
    for region, application, platform, group, settings in plan:
        cd = client("codedeploy", url, region)
        if not _exists(lambda: cd.get_application(applicationName=application), ("ApplicationDoesNotExistException",)):
            cd.create_application(applicationName=application, computePlatform=platform)
        if not _exists(
            lambda: cd.get_deployment_group(applicationName=application, deploymentGroupName=group),
            ("DeploymentGroupDoesNotExistException",),
        ):
            cd.create_deployment_group(
                applicationName=application, deploymentGroupName=group, serviceRoleArn=r.SERVICE_ROLE_ARN, **settings
            )


SMOKE_DEFINITION = {
    "Comment": "Adds the smoke tests' report to the input",
    "StartAt": "RunSmokeTests",
    "States": {
        "RunSmokeTests": {
            "Type": "Pass",
            "Result": {"passed": 3, "failed": 0},
            "ResultPath": "$.report",
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}
FAILING_DEFINITION = {
    "StartAt": "RunSmokeTests",
    "States": {
        "RunSmokeTests": {"Type": "Pass", "Next": "Fail"},
        "Fail": {"Type": "Fail", "Error": r.FAILING_STATE_MACHINE_ERROR, "Cause": r.FAILING_STATE_MACHINE_CAUSE},
    },
}


def _stepfunctions(url: str) -> None:
    sfn = client("stepfunctions", url)
    existing = {m["name"] for m in sfn.list_state_machines()["stateMachines"]}
    for name, definition in (
        (r.SMOKE_STATE_MACHINE, SMOKE_DEFINITION),
        (r.FAILING_STATE_MACHINE, FAILING_DEFINITION),
    ):
        if name not in existing:
            sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=r.SERVICE_ROLE_ARN)


def _elasticbeanstalk(url: str) -> None:
    eb = client("elasticbeanstalk", url)
    if not eb.describe_applications(ApplicationNames=[r.EB_APPLICATION])["Applications"]:
        eb.create_application(ApplicationName=r.EB_APPLICATION)
    if not eb.describe_application_versions(ApplicationName=r.EB_APPLICATION, VersionLabels=[r.EB_INITIAL_VERSION])[
        "ApplicationVersions"
    ]:
        client("s3", url).put_object(Bucket=r.ARTIFACT_BUCKET, Key=r.EB_BUNDLE_KEY, Body=_eb_bundle())
        eb.create_application_version(
            ApplicationName=r.EB_APPLICATION,
            VersionLabel=r.EB_INITIAL_VERSION,
            SourceBundle={"S3Bucket": r.ARTIFACT_BUCKET, "S3Key": r.EB_BUNDLE_KEY},
        )
    if not eb.describe_environments(ApplicationName=r.EB_APPLICATION, EnvironmentNames=[r.EB_ENVIRONMENT])[
        "Environments"
    ]:
        eb.create_environment(
            ApplicationName=r.EB_APPLICATION,
            EnvironmentName=r.EB_ENVIRONMENT,
            VersionLabel=r.EB_INITIAL_VERSION,
            SolutionStackName="64bit Amazon Linux 2023 v4.3.0 running Python 3.11",
        )


def _eb_bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("application.py", "def application(environ, start_response):\n    return [b'ok']\n")
    return buffer.getvalue()


def _notifications(url: str) -> str:
    sns, sqs = client("sns", url), client("sqs", url)
    topic = sns.create_topic(Name=r.SNS_TOPIC)["TopicArn"]  # idempotent in SNS
    queue_url = sqs.create_queue(QueueName=r.INBOX_QUEUE)["QueueUrl"]  # idempotent with the same attributes
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "topic-to-inbox",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    subscribed = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
    if queue_arn not in subscribed:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    return queue_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.sandbox.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", default=f"http://127.0.0.1:{r.SANDBOX_PORT}")
    args = parser.parse_args(argv)
    result = seed(args.endpoint_url)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
