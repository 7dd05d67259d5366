"""deploy.codedeploy actions in real Airflow processes, on the sandbox's CodeDeploy, ECS and Lambda.

Pipelines: tests/integration/pipelines/cd-*.yaml (a source action, then a Deploy stage). They deploy to
CodeDeploy applications and groups of their own (`cdtest-ec2`, `cdtest-ecs`, `cdtest-lambda`, one group
per scenario), with their own ECS services and Lambda functions, created here the way
include/sandbox/seed.py creates the example's, so the faults set on them never touch other tests.

A deferred action ends (in the triggerer) as soon as its poller sees the deployment finished. All six runs are started at once by the `runs` fixture (with a thread that continues
one cd-ready deployment by hand just before its action does); the tests then act on them in file order:
first the ones that need a live triggerer at a given moment (mark failed, kill the triggerer), then the
ones that only wait for a result, which meanwhile have had time to finish.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import zipfile
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources
from include.sandbox.client import SandboxClient
from release_orchestrator.operators.reattach import stable_token
from tests.integration.helpers import aws_client, task_log, ti_states, wait_for, wait_for_run, wait_for_task_state

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 240

EC2_APP, ECS_APP, LAMBDA_APP = "cdtest-ec2", "cdtest-ecs", "cdtest-lambda"
CLUSTER = "cdtest"
TASK_FAMILY = "cdtest-web"
ALIAS = "live"
IMAGE_REPOSITORY = f"{resources.ACCOUNT_ID}.dkr.ecr.{resources.REGION}.amazonaws.com/webapp"

# Deployment groups per application; the ones listed in READY_GROUPS hold blue/green deployments at
# Ready (deploymentReadyOption.actionOnTimeout STOP_DEPLOYMENT) until ContinueDeployment.
EC2_GROUPS = ("platforms", "rollback", "parallel", "reattach")
ECS_GROUPS = ("platforms", "rollback", "stop", "ready-continue", "ready-wait", "ready-raced", "parallel")
LAMBDA_GROUPS = ("platforms", "parallel")
READY_GROUPS = {(EC2_APP, "reattach"), (ECS_APP, "ready-continue"), (ECS_APP, "ready-wait"), (ECS_APP, "ready-raced")}

# Faults on our own groups only (keyed application/group); cleared when the module ends.
FAULTS = {
    f"{ECS_APP}/rollback": {"mode": "fail", "event": "AfterAllowTraffic"},  # after the service moved
    f"{EC2_APP}/rollback": {"mode": "fail"},  # ValidateService, a script failing
    f"{ECS_APP}/stop": {"mode": "hang", "event": "AfterAllowTraffic"},  # after the service moved
    f"{LAMBDA_APP}/parallel": {"mode": "fail", "event": "AfterAllowTraffic"},  # after the alias moved
}

PIPELINES = ("cd-stop", "cd-reattach", "cd-platforms", "cd-rollback", "cd-ready", "cd-parallel")


# ---- resources -------------------------------------------------------------------------------


def service_name(group: str) -> str:
    return f"cdtest-{group}"


def function_name(group: str) -> str:
    return f"cdtest-api-{group}"


def s3_revision(key: str) -> dict:
    return {"revisionType": "S3", "s3Location": {"bucket": resources.ARTIFACT_BUCKET, "key": key, "bundleType": "zip"}}


def revision_key(group: str, commit: str) -> str:
    """The key the cd-*.yaml server actions deploy: cdtest/<group>/#{Source.CommitId}/app.zip."""
    return f"cdtest/{group}/{commit}/app.zip"


def lambda_zip(marker: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {'statusCode': 200}\n")
        archive.writestr("RELEASE", marker)
    return buffer.getvalue()


def _missing(call, codes: tuple[str, ...]) -> bool:
    try:
        call()
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] in codes:
            return True
        raise


@pytest.fixture(scope="module")
def cd_resources(airflow_env) -> dict:
    """Our own ECS services, Lambda functions and CodeDeploy groups, and what each runs before the tests.

    EC2 groups get a first (baseline) deployment, so "unchanged" has a revision to compare with. Lambda
    functions have version 1 behind their alias and changed code not yet published, so publishing gives
    a new version.
    """
    elb, ecs = aws_client(airflow_env, "elbv2"), aws_client(airflow_env, "ecs")
    lam, cd = aws_client(airflow_env, "lambda"), aws_client(airflow_env, "codedeploy")
    ec2 = aws_client(airflow_env, "ec2")

    # The seed's network: target groups and listeners are only named by our groups and services.
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    security_group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    blue = elb.describe_target_groups(Names=["webapp-ecs-blue"])["TargetGroups"][0]["TargetGroupArn"]
    balancer = elb.describe_load_balancers(Names=["webapp-alb"])["LoadBalancers"][0]["LoadBalancerArn"]
    listeners = {
        lsn["Port"]: lsn["ListenerArn"] for lsn in elb.describe_listeners(LoadBalancerArn=balancer)["Listeners"]
    }

    # ECS: one cluster, a baseline task definition, one CODE_DEPLOY service per group.
    ecs.create_cluster(clusterName=CLUSTER)
    baseline_task = ecs.register_task_definition(
        family=TASK_FAMILY,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=resources.SERVICE_ROLE_ARN,
        containerDefinitions=[
            {
                "name": "web",
                "image": f"{IMAGE_REPOSITORY}:baseline",
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    for group in ECS_GROUPS:
        found = ecs.describe_services(cluster=CLUSTER, services=[service_name(group)])["services"]
        if [s for s in found if s["status"] == "ACTIVE"]:
            ecs.update_service(cluster=CLUSTER, service=service_name(group), taskDefinition=baseline_task)
            continue
        ecs.create_service(
            cluster=CLUSTER,
            serviceName=service_name(group),
            taskDefinition=baseline_task,
            desiredCount=1,
            launchType="FARGATE",
            deploymentController={"type": "CODE_DEPLOY"},
            loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080}],
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": subnets[:2],
                    "securityGroups": [security_group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )

    # Lambda: version 1 behind the alias, new code waiting to be published.
    for group in LAMBDA_GROUPS:
        name = function_name(group)
        if _missing(lambda: lam.get_function(FunctionName=name), ("ResourceNotFoundException",)):
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=resources.SERVICE_ROLE_ARN,
                Handler="handler.handler",
                Code={"ZipFile": lambda_zip("1")},
                Timeout=10,
            )
            version = lam.publish_version(FunctionName=name)["Version"]
            lam.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion=version)
        lam.update_function_code(FunctionName=name, ZipFile=lambda_zip(f"next-{time.time()}"))

    # CodeDeploy: blue/green groups like the seed's, rolling back on DEPLOYMENT_FAILURE.
    rollback = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    blue_green = {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"}

    def ready_option(app: str, group: str) -> dict:
        action = "STOP_DEPLOYMENT" if (app, group) in READY_GROUPS else "CONTINUE_DEPLOYMENT"
        return {"actionOnTimeout": action, "waitTimeInMinutes": 0}

    def settings(app: str, group: str) -> dict:
        terminate = {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0}
        if app == EC2_APP:
            return {
                "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
                "deploymentStyle": blue_green,
                "blueGreenDeploymentConfiguration": {
                    "terminateBlueInstancesOnDeploymentSuccess": terminate,
                    "deploymentReadyOption": ready_option(app, group),
                    "greenFleetProvisioningOption": {"action": "COPY_AUTO_SCALING_GROUP"},
                },
                "autoScalingGroups": [resources.EC2_AUTOSCALING_GROUP],
                "loadBalancerInfo": {"targetGroupInfoList": [{"name": "webapp-ec2"}]},
                "autoRollbackConfiguration": rollback,
            }
        if app == ECS_APP:
            return {
                "deploymentConfigName": "CodeDeployDefault.ECSAllAtOnce",
                "deploymentStyle": blue_green,
                "blueGreenDeploymentConfiguration": {
                    "terminateBlueInstancesOnDeploymentSuccess": terminate,
                    "deploymentReadyOption": ready_option(app, group),
                },
                "ecsServices": [{"serviceName": service_name(group), "clusterName": CLUSTER}],
                "loadBalancerInfo": {
                    "targetGroupPairInfoList": [
                        {
                            "targetGroups": [{"name": "webapp-ecs-blue"}, {"name": "webapp-ecs-green"}],
                            "prodTrafficRoute": {"listenerArns": [listeners[80]]},
                            "testTrafficRoute": {"listenerArns": [listeners[8443]]},
                        }
                    ]
                },
                "autoRollbackConfiguration": rollback,
            }
        return {
            "deploymentConfigName": "CodeDeployDefault.LambdaAllAtOnce",
            "deploymentStyle": blue_green,
            "autoRollbackConfiguration": rollback,
        }

    for app, platform, groups in (
        (EC2_APP, "Server", EC2_GROUPS),
        (ECS_APP, "ECS", ECS_GROUPS),
        (LAMBDA_APP, "Lambda", LAMBDA_GROUPS),
    ):
        if _missing(lambda: cd.get_application(applicationName=app), ("ApplicationDoesNotExistException",)):
            cd.create_application(applicationName=app, computePlatform=platform)
        for group in groups:
            if _missing(
                lambda: cd.get_deployment_group(applicationName=app, deploymentGroupName=group),
                ("DeploymentGroupDoesNotExistException",),
            ):
                cd.create_deployment_group(
                    applicationName=app,
                    deploymentGroupName=group,
                    serviceRoleArn=resources.SERVICE_ROLE_ARN,
                    **settings(app, group),
                )

    # Baseline EC2 revisions, deployed directly (Ready groups continued by hand).
    baseline = {group: s3_revision(f"cdtest/{group}/baseline/app.zip") for group in EC2_GROUPS}
    pending = {
        cd.create_deployment(
            applicationName=EC2_APP, deploymentGroupName=group, revision=revision, description="baseline"
        )["deploymentId"]
        for group, revision in baseline.items()
    }

    def baseline_done() -> bool:
        for info in cd.batch_get_deployments(deploymentIds=sorted(pending))["deploymentsInfo"]:
            if info["status"] == "Ready":
                cd.continue_deployment(deploymentId=info["deploymentId"], deploymentWaitType="READY_WAIT")
            elif info["status"] != "Succeeded" and info["status"] not in ("Created", "InProgress"):
                raise AssertionError(f"baseline deployment {info['deploymentId']} {info['status']}")
        return all(
            i["status"] == "Succeeded"
            for i in cd.batch_get_deployments(deploymentIds=sorted(pending))["deploymentsInfo"]
        )

    wait_for(baseline_done, 60, interval=0.5, what="the baseline EC2 deployments")
    for group, revision in baseline.items():
        assert group_info(cd, EC2_APP, group)["targetRevision"] == revision
    return {"task_definition": baseline_task, "ec2_revisions": baseline}


# ---- runs ------------------------------------------------------------------------------------


def new_commit(label: str) -> str:
    return hashlib.sha1(f"{label}-{time.time()}-{os.getpid()}".encode()).hexdigest()


class ReadyRacer(threading.Thread):
    """Continues cd-ready's Deploy.Raced deployment by hand the moment it reaches Ready, racing the action's
    trigger (which polls every 2 s and continues it too): whoever comes second finds it no longer at Ready.
    """

    dag_id, task_id, group = "cd-ready", "Deploy.Raced", "ready-raced"

    def __init__(self, env, run_id: str):
        super().__init__(name="ready-racer", daemon=True)
        self.env, self.run_id = env, run_id
        self.continued: str | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            cd = aws_client(self.env, "codedeploy")
            deadline = time.monotonic() + RUN_TIMEOUT
            while time.monotonic() < deadline and not self.done.is_set():
                found = deployments_of_task(cd, ECS_APP, self.group, self.dag_id, self.run_id, self.task_id)
                if found and found[0]["status"] == "Ready":
                    try:
                        cd.continue_deployment(deploymentId=found[0]["deploymentId"], deploymentWaitType="READY_WAIT")
                        self.continued = found[0]["deploymentId"]
                    except ClientError:
                        pass  # the action was faster
                    return
                if found and found[0]["status"] in ("Succeeded", "Failed", "Stopped"):
                    return
                time.sleep(0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


@pytest.fixture(scope="module")
def runs(airflow_env, api, cd_resources):
    """Set our faults, then start one run of every cd-* pipeline at once: pipeline -> (run_id, commit)."""
    for dag_id in PIPELINES:
        api.wait_for_dag(dag_id, timeout=240)
    sandbox = SandboxClient(airflow_env.sandbox_url)
    racer = None
    try:
        sandbox.set_faults({"codedeploy": FAULTS})
        started = {}
        for dag_id in PIPELINES:
            commit = new_commit(dag_id)
            started[dag_id] = (api.trigger(dag_id, conf={"source": {"commit_id": commit}})["dag_run_id"], commit)
            if dag_id == ReadyRacer.dag_id:
                racer = ReadyRacer(airflow_env, started[dag_id][0])
                racer.start()
        started["racer"] = racer
        yield started
    finally:
        if racer is not None:
            racer.done.set()
            racer.join(timeout=10)
        sandbox.set_faults({"codedeploy": {target: None for target in FAULTS}})


@pytest.fixture(scope="module")
def notices(inbox):
    """Action-failed messages from the SNS inbox, kept for every test (draining removes them from SQS)."""
    seen: list[dict] = []

    def find(pipeline: str, run_id: str, task_id: str, timeout: float = 60) -> dict:
        subject = f"FAILED: action {task_id} of pipeline {pipeline} (run {run_id})"

        def look():
            seen.extend(inbox.drain())
            found = [m["parsed"] for m in seen if m.get("Subject") == subject]
            return found

        found = wait_for(look, timeout, interval=0.1, what=f"the SNS message {subject!r}")
        assert len(found) == 1, found
        return found[0]

    return find


# ---- helpers ---------------------------------------------------------------------------------


def group_info(cd, app: str, group: str) -> dict:
    return cd.get_deployment_group(applicationName=app, deploymentGroupName=group)["deploymentGroupInfo"]


def deployments(cd, app: str, group: str) -> list[dict]:
    """Every deployment of the group, newest first (the sandbox's ListDeployments has no paging)."""
    ids = cd.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]
    return cd.batch_get_deployments(deploymentIds=ids)["deploymentsInfo"] if ids else []


def task_marker(dag_id: str, run_id: str, task_id: str) -> str:
    """The marker the action puts into its deployment's description (docs/operators.md, Reattach)."""
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1)
    return f"[airflow-task {stable_token({'ti': ti}, 'codedeploy')[:24]}]"


def deployments_of_task(cd, app: str, group: str, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    """The deployments the task created (rollback deployments CodeDeploy made of them left out)."""
    marker = task_marker(dag_id, run_id, task_id)
    return [
        d
        for d in deployments(cd, app, group)
        if marker in (d.get("description") or "") and d.get("creator") != "codeDeployRollback"
    ]


def the_deployment(cd, app, group, dag_id, run_id, task_id, timeout: float = 120) -> dict:
    """The single deployment the task created, once it exists."""
    found = wait_for(
        lambda: deployments_of_task(cd, app, group, dag_id, run_id, task_id),
        timeout,
        interval=0.5,
        what=f"the deployment of {task_id} in {app}/{group}",
    )
    assert len(found) == 1, [d["deploymentId"] for d in found]
    return found[0]


def rollbacks(cd, app: str, group: str) -> list[dict]:
    return [d for d in deployments(cd, app, group) if d.get("creator") == "codeDeployRollback"]


def lifecycle(cd, deployment_id: str) -> dict[str, str]:
    """Lifecycle event -> status on the deployment's (first) target."""
    ids = cd.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
    target = cd.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids[:1])["deploymentTargets"][0]
    details = next(v for k, v in target.items() if k.endswith("Target") and isinstance(v, dict))
    return {e["lifecycleEventName"]: e["status"] for e in details["lifecycleEvents"]}


def service_task_definition(ecs, group: str) -> str:
    return ecs.describe_services(cluster=CLUSTER, services=[service_name(group)])["services"][0]["taskDefinition"]


def alias_version(lam, group: str) -> str:
    return lam.get_alias(FunctionName=function_name(group), Name=ALIAS)["FunctionVersion"]


def task_instance(api, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def restart_triggerer(env) -> None:
    env.kill_and_restart("triggerer")


def assert_success_outputs(outputs: dict, deployment: dict) -> None:
    assert outputs["DeploymentId"] == deployment["deploymentId"]
    assert outputs["DeploymentStatus"] == "Succeeded" == deployment["status"]
    assert deployment["deploymentId"] in outputs["ConsoleUrl"]
    assert outputs["ConsoleUrl"].startswith("https://")


# ---- tests: the ones acting on a waiting task first --------------------------------------------


def test_marking_the_waiting_task_failed_stops_and_rolls_back_the_deployment(airflow_env, api, runs, cd_resources):
    dag_id, task_id = "cd-stop", "Deploy.ECS"
    run_id, commit = runs[dag_id]
    cd, ecs = aws_client(airflow_env, "codedeploy"), aws_client(airflow_env, "ecs")

    wait_for_task_state(api, dag_id, run_id, task_id, {"deferred"}, timeout=RUN_TIMEOUT)
    deployment = the_deployment(cd, ECS_APP, "stop", dag_id, run_id, task_id)
    registered = json.loads(deployment["revision"]["appSpecContent"]["content"])["Resources"][0]["TargetService"][
        "Properties"
    ]["TaskDefinition"]
    # The fault holds the deployment in AfterAllowTraffic: the service already runs the new revision.
    wait_for(
        lambda: service_task_definition(ecs, "stop") == registered,
        60,
        interval=0.5,
        what="the service to run the new task definition",
    )
    assert cd.get_deployment(deploymentId=deployment["deploymentId"])["deploymentInfo"]["status"] == "InProgress"

    api.set_task_state(dag_id, run_id, task_id, "failed")
    marked = time.monotonic()
    stopped = wait_for(
        lambda: (
            (d := cd.get_deployment(deploymentId=deployment["deploymentId"])["deploymentInfo"])["status"] == "Stopped"
            and d
        ),
        30,
        interval=0.5,
        what=f"deployment {deployment['deploymentId']} to be Stopped",
    )
    assert time.monotonic() - marked <= 30
    assert stopped["errorInformation"]["code"] == "MANUAL_STOP"
    # Stopped with rollback: a rollback deployment restored the service's previous task definition.
    rollback_id = stopped["rollbackInfo"]["rollbackDeploymentId"]
    rollback = cd.get_deployment(deploymentId=rollback_id)["deploymentInfo"]
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == deployment["deploymentId"]
    assert service_task_definition(ecs, "stop") == cd_resources["task_definition"]

    run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "failed"
    assert ti_states(api, dag_id, run_id) == {"Source.Checkout": "success", task_id: "failed"}


def test_killed_triggerer_the_wait_goes_on_with_the_same_deployment(airflow_env, api, runs, cd_resources):
    dag_id, task_id = "cd-reattach", "Deploy.EC2"
    run_id, commit = runs[dag_id]
    cd = aws_client(airflow_env, "codedeploy")

    # The group holds deployments at Ready and the action waits (on_ready: wait): the deployment stays
    # in flight, with the task deferred, until we continue it after the triggerer is back.
    wait_for_task_state(api, dag_id, run_id, task_id, {"deferred"}, timeout=RUN_TIMEOUT)
    deployment = the_deployment(cd, EC2_APP, "reattach", dag_id, run_id, task_id)
    wait_for(
        lambda: cd.get_deployment(deploymentId=deployment["deploymentId"])["deploymentInfo"]["status"] == "Ready",
        60,
        interval=0.5,
        what="the deployment to wait at Ready",
    )
    try_number = task_instance(api, dag_id, run_id, task_id)["try_number"]

    old = airflow_env._procs["triggerer"]
    restart_triggerer(airflow_env)
    assert old.poll() is not None and airflow_env._procs["triggerer"] is not old
    assert task_instance(api, dag_id, run_id, task_id)["state"] == "deferred"
    cd.continue_deployment(deploymentId=deployment["deploymentId"], deploymentWaitType="READY_WAIT")

    try:
        run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(
            f"{error}; the triggerer's log ends with:\n{airflow_env.tail_log('triggerer', 60)}"
        ) from None
    assert run["state"] == "success", ti_states(api, dag_id, run_id)
    ti = task_instance(api, dag_id, run_id, task_id)
    assert ti["state"] == "success" and ti["try_number"] == try_number
    outputs = api.xcom(dag_id, run_id, task_id)
    assert outputs["DeploymentId"] == deployment["deploymentId"]
    # Exactly one deployment for this run in the group; it is the one the group now runs.
    assert [d["deploymentId"] for d in deployments_of_task(cd, EC2_APP, "reattach", dag_id, run_id, task_id)] == [
        deployment["deploymentId"]
    ]
    info = group_info(cd, EC2_APP, "reattach")
    assert info["targetRevision"] == s3_revision(revision_key("reattach", commit))
    assert info["lastSuccessfulDeployment"]["deploymentId"] == deployment["deploymentId"]
    airflow_env.check_alive()


# ---- tests: the ones waiting for results --------------------------------------------------------


def test_each_platform_deploys_its_new_version(airflow_env, api, runs, cd_resources):
    dag_id = "cd-platforms"
    run_id, commit = runs[dag_id]
    cd, ecs = aws_client(airflow_env, "codedeploy"), aws_client(airflow_env, "ecs")
    lam = aws_client(airflow_env, "lambda")

    run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    states = ti_states(api, dag_id, run_id)
    assert run["state"] == "success", states
    assert states == {
        "Source.Checkout": "success",
        "Deploy.EC2": "success",
        "Deploy.ECS": "success",
        "Deploy.Lambda": "success",
    }

    # EC2: the group's target revision is the bundle the action was given.
    ec2_out = api.xcom(dag_id, run_id, "Deploy.EC2")
    ec2_deployment = the_deployment(cd, EC2_APP, "platforms", dag_id, run_id, "Deploy.EC2")
    assert_success_outputs(ec2_out, ec2_deployment)
    assert ec2_deployment["revision"] == s3_revision(revision_key("platforms", commit))
    info = group_info(cd, EC2_APP, "platforms")
    assert info["targetRevision"] == s3_revision(revision_key("platforms", commit))
    assert info["targetRevision"] != cd_resources["ec2_revisions"]["platforms"]
    assert info["lastSuccessfulDeployment"]["deploymentId"] == ec2_out["DeploymentId"]
    assert "TaskDefinitionArn" not in ec2_out and "LambdaVersion" not in ec2_out

    # ECS: the service runs the new revision the action registered, with the image it was given.
    ecs_out = api.xcom(dag_id, run_id, "Deploy.ECS")
    assert_success_outputs(ecs_out, the_deployment(cd, ECS_APP, "platforms", dag_id, run_id, "Deploy.ECS"))
    arn = ecs_out["TaskDefinitionArn"]
    assert arn.startswith(f"arn:aws:ecs:{resources.REGION}:{resources.ACCOUNT_ID}:task-definition/{TASK_FAMILY}:")
    assert arn != cd_resources["task_definition"]
    assert service_task_definition(ecs, "platforms") == arn
    container = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"][0]
    assert container["name"] == "web" and container["image"] == f"{IMAGE_REPOSITORY}:{commit}"

    # Lambda: the alias points at the version the action published.
    lambda_out = api.xcom(dag_id, run_id, "Deploy.Lambda")
    assert_success_outputs(lambda_out, the_deployment(cd, LAMBDA_APP, "platforms", dag_id, run_id, "Deploy.Lambda"))
    version = str(lambda_out["LambdaVersion"])
    assert version != "1"
    assert alias_version(lam, "platforms") == version
    published = {
        v["Version"] for v in lam.list_versions_by_function(FunctionName=function_name("platforms"))["Versions"]
    }
    assert version in published

    for app in (EC2_APP, ECS_APP, LAMBDA_APP):
        assert rollbacks(cd, app, "platforms") == []


def test_failed_deployments_name_the_lifecycle_event_and_roll_back(airflow_env, api, runs, cd_resources, notices):
    dag_id = "cd-rollback"
    run_id, commit = runs[dag_id]
    cd, ecs = aws_client(airflow_env, "codedeploy"), aws_client(airflow_env, "ecs")

    run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "failed"
    assert ti_states(api, dag_id, run_id) == {
        "Source.Checkout": "success",
        "Deploy.EC2": "failed",
        "Deploy.ECS": "failed",
    }

    # ECS: the hook after AllowTraffic failed, after the service had moved; rolled back.
    ecs_deployment = the_deployment(cd, ECS_APP, "rollback", dag_id, run_id, "Deploy.ECS")
    assert ecs_deployment["status"] == "Failed"
    events = lifecycle(cd, ecs_deployment["deploymentId"])
    assert events["AllowTraffic"] == "Succeeded" and events["AfterAllowTraffic"] == "Failed"
    rollback_id = ecs_deployment["rollbackInfo"]["rollbackDeploymentId"]
    assert [d["deploymentId"] for d in rollbacks(cd, ECS_APP, "rollback")] == [rollback_id]
    assert service_task_definition(ecs, "rollback") == cd_resources["task_definition"]
    summary = notices(dag_id, run_id, "Deploy.ECS")["detail"]["error-summary"]
    assert summary.startswith(f"Deployment {ecs_deployment['deploymentId']} of {ECS_APP}/rollback Failed; ")
    assert (
        f"lifecycle event AfterAllowTraffic failed on {CLUSTER}:{service_name('rollback')}: ScriptFailed: "
        "hook function CodeDeployHook_AfterAllowTraffic reported Failed: smoke test GET /health returned HTTP 500"
    ) in summary
    assert "HOOK_EXECUTION_FAILURE: " in summary
    assert f"rolled back by deployment {rollback_id}" in summary

    # EC2: the validation script failed; rolled back, the group keeps its previous revision.
    ec2_deployment = the_deployment(cd, EC2_APP, "rollback", dag_id, run_id, "Deploy.EC2")
    assert ec2_deployment["status"] == "Failed"
    assert ec2_deployment["revision"] == s3_revision(revision_key("rollback", commit))
    assert lifecycle(cd, ec2_deployment["deploymentId"])["ValidateService"] == "Failed"
    rollback_id = ec2_deployment["rollbackInfo"]["rollbackDeploymentId"]
    rollback = cd.get_deployment(deploymentId=rollback_id)["deploymentInfo"]
    assert rollback["revision"] == cd_resources["ec2_revisions"]["rollback"]
    assert group_info(cd, EC2_APP, "rollback")["targetRevision"] == cd_resources["ec2_revisions"]["rollback"]
    summary = notices(dag_id, run_id, "Deploy.EC2")["detail"]["error-summary"]
    assert summary.startswith(f"Deployment {ec2_deployment['deploymentId']} of {EC2_APP}/rollback Failed; ")
    assert "lifecycle event ValidateService failed on i-" in summary
    assert (
        "ScriptFailed: Script at specified location: scripts/validate_service.sh run as user root failed with "
        "exit code 1 (script scripts/validate_service.sh)"
    ) in summary
    assert "HEALTH_CONSTRAINTS: " in summary
    assert f"rolled back by deployment {rollback_id}" in summary

    # The failed event's log tail went into the task log.
    log = task_log(api, dag_id, run_id, "Deploy.EC2", containing=("Log tail of ValidateService",))
    assert "Log tail of ValidateService" in log and "The requested URL returned error: 503" in log


def test_ready_deployments_continue_by_themselves_or_wait_for_someone(airflow_env, api, runs, cd_resources):
    dag_id = "cd-ready"
    run_id, commit = runs[dag_id]
    cd, ecs = aws_client(airflow_env, "codedeploy"), aws_client(airflow_env, "ecs")

    # on_ready: continue -- the action continued its deployment at Ready and it succeeded.
    wait_for_task_state(api, dag_id, run_id, "Deploy.Continue", {"success", "failed"}, timeout=RUN_TIMEOUT)
    continued = the_deployment(cd, ECS_APP, "ready-continue", dag_id, run_id, "Deploy.Continue")
    out = api.xcom(dag_id, run_id, "Deploy.Continue")
    assert_success_outputs(out, cd.get_deployment(deploymentId=continued["deploymentId"])["deploymentInfo"])
    assert service_task_definition(ecs, "ready-continue") == out["TaskDefinitionArn"] != cd_resources["task_definition"]
    log = task_log(api, dag_id, run_id, "Deploy.Continue", containing=("continuing it",))
    assert f"Deployment {continued['deploymentId']} is Ready: continuing it" in log

    # on_ready: wait -- meanwhile the other deployment still waits at Ready, production traffic unmoved.
    waiting = the_deployment(cd, ECS_APP, "ready-wait", dag_id, run_id, "Deploy.Wait")
    wait_for(
        lambda: cd.get_deployment(deploymentId=waiting["deploymentId"])["deploymentInfo"]["status"] == "Ready",
        60,
        interval=0.5,
        what="the on_ready: wait deployment to reach Ready",
    )
    assert task_instance(api, dag_id, run_id, "Deploy.Wait")["state"] == "deferred"
    assert service_task_definition(ecs, "ready-wait") == cd_resources["task_definition"]
    assert api.get_run(dag_id, run_id)["state"] == "running"

    cd.continue_deployment(deploymentId=waiting["deploymentId"], deploymentWaitType="READY_WAIT")
    run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", ti_states(api, dag_id, run_id)
    out = api.xcom(dag_id, run_id, "Deploy.Wait")
    assert_success_outputs(out, cd.get_deployment(deploymentId=waiting["deploymentId"])["deploymentInfo"])
    assert service_task_definition(ecs, "ready-wait") == out["TaskDefinitionArn"] != cd_resources["task_definition"]
    assert "continuing it" not in task_log(api, dag_id, run_id, "Deploy.Wait")

    # on_ready: continue, while a person continues it too, the moment it reaches Ready: whoever comes second
    # finds it no longer at Ready, and the action waits for its end instead of failing on ContinueDeployment.
    # (Which one wins is up to timing; unit tests cover the refused ContinueDeployment itself.)
    racer = runs["racer"]
    racer.join(timeout=RUN_TIMEOUT)
    assert racer.error is None, racer.error
    raced = the_deployment(cd, ECS_APP, "ready-raced", dag_id, run_id, "Deploy.Raced")
    out = api.xcom(dag_id, run_id, "Deploy.Raced")
    assert_success_outputs(out, cd.get_deployment(deploymentId=raced["deploymentId"])["deploymentInfo"])
    assert service_task_definition(ecs, "ready-raced") == out["TaskDefinitionArn"] != cd_resources["task_definition"]
    log = task_log(api, dag_id, run_id, "Deploy.Raced")
    if racer.continued == raced["deploymentId"]:
        assert "is Ready: continuing it" not in log or "left Ready meanwhile" in log


def test_parallel_deploys_one_failing_rolls_back_only_that_one(airflow_env, api, runs, cd_resources, notices):
    dag_id = "cd-parallel"
    run_id, commit = runs[dag_id]
    cd, ecs = aws_client(airflow_env, "codedeploy"), aws_client(airflow_env, "ecs")
    lam = aws_client(airflow_env, "lambda")

    run = wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "failed"
    # The sibling failure does not cut the other two short: they run to their end and succeed.
    assert ti_states(api, dag_id, run_id) == {
        "Source.Checkout": "success",
        "Deploy.EC2": "success",
        "Deploy.ECS": "success",
        "Deploy.Lambda": "failed",
    }

    ec2_out = api.xcom(dag_id, run_id, "Deploy.EC2")
    assert_success_outputs(ec2_out, the_deployment(cd, EC2_APP, "parallel", dag_id, run_id, "Deploy.EC2"))
    assert group_info(cd, EC2_APP, "parallel")["targetRevision"] == s3_revision(revision_key("parallel", commit))
    ecs_out = api.xcom(dag_id, run_id, "Deploy.ECS")
    assert_success_outputs(ecs_out, the_deployment(cd, ECS_APP, "parallel", dag_id, run_id, "Deploy.ECS"))
    assert service_task_definition(ecs, "parallel") == ecs_out["TaskDefinitionArn"] != cd_resources["task_definition"]
    assert rollbacks(cd, EC2_APP, "parallel") == [] and rollbacks(cd, ECS_APP, "parallel") == []

    # Lambda: the alias had moved to the published version when the last hook failed; it is back on 1.
    failed = the_deployment(cd, LAMBDA_APP, "parallel", dag_id, run_id, "Deploy.Lambda")
    assert failed["status"] == "Failed"
    events = lifecycle(cd, failed["deploymentId"])
    assert events["AllowTraffic"] == "Succeeded" and events["AfterAllowTraffic"] == "Failed"
    appspec = json.loads(failed["revision"]["appSpecContent"]["content"])
    properties = next(iter(appspec["Resources"][0].values()))["Properties"]
    assert properties["CurrentVersion"] == "1" and properties["TargetVersion"] != "1"
    assert alias_version(lam, "parallel") == "1"
    rollback_id = failed["rollbackInfo"]["rollbackDeploymentId"]
    assert [d["deploymentId"] for d in rollbacks(cd, LAMBDA_APP, "parallel")] == [rollback_id]
    summary = notices(dag_id, run_id, "Deploy.Lambda")["detail"]["error-summary"]
    assert (
        f"lifecycle event AfterAllowTraffic failed on {function_name('parallel')}:{ALIAS}: ScriptFailed: "
        "hook function CodeDeployHook_AfterAllowTraffic reported Failed"
    ) in summary
    assert f"rolled back by deployment {rollback_id}" in summary
