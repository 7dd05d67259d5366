"""The catalogue's action types in real Airflow processes: compiled from a spec, run by workers, waited on
by the triggerer's shared poller, on the sandbox's CloudFormation, S3, ECS, Elastic Beanstalk, Lambda, Step
Functions and CodeBuild.

Pipelines: tests/integration/pipelines/cat-*.yaml.
- cat-every-type: every type succeeding in one release, the actions reading each other's outputs.
- cat-fail: a stack the sandbox fails and the seeded failing state machine, in parallel: each action fails
  naming the resource and the error AWS gives.
- cat-stop: an ECS rolling deployment and an Elastic Beanstalk update the sandbox holds in progress, on a
  service and an environment of their own created here; marking each waiting task failed rolls the service
  back and aborts the update.
The faults are keyed on this module's own stack, service and environment, so they touch no other test, and
are cleared when the module ends. The `background` fixture starts the three runs at once; each test then
waits for its own. The other types' failures and stops, and other ways to fail (ECS's circuit breaker, a
Lambda function raising...), are tested against the sandbox in tests/sandbox/test_sandbox_*.py.
"""

from __future__ import annotations

import pytest

from include.sandbox import resources as r
from include.sandbox.client import SandboxClient
from tests.integration.helpers import aws_client, task_log, ti_states, wait_for, wait_for_run, wait_for_task_state

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 240
EVERY_TYPE, FAILING, STOPPED = "cat-every-type", "cat-fail", "cat-stop"

FAIL_STACK = "cat-fail-stack"  # cat-fail.yaml's Checks.Stack
STOP_CLUSTER, STOP_SERVICE, STOP_CONTAINER = "cat-stop", "cat-stop-worker", "worker"  # cat-stop.yaml's Deploy.Worker
STOP_APPLICATION, STOP_ENVIRONMENT = "cat-stop-eb", "cat-stop-eb-env"  # cat-stop.yaml's Deploy.Beanstalk
BASELINE_VERSION = "baseline"

FAULTS = {
    "cloudformation": {FAIL_STACK: {"mode": "fail"}},
    # Holds a deployment of any task definition but the last completed one: the baseline deploys, ours hangs.
    "ecs": {f"{STOP_CLUSTER}/{STOP_SERVICE}": {"mode": "hang"}},
    "elasticbeanstalk": {f"{STOP_APPLICATION}/{STOP_ENVIRONMENT}": {"mode": "hang"}},
}


def ecs_service(ecs) -> dict:
    return ecs.describe_services(cluster=STOP_CLUSTER, services=[STOP_SERVICE])["services"][0]


def eb_environment(eb) -> dict:
    return eb.describe_environments(ApplicationName=STOP_APPLICATION, EnvironmentNames=[STOP_ENVIRONMENT])[
        "Environments"
    ][0]


def only_deployment_completed(service: dict) -> bool:
    return [d["rolloutState"] for d in service["deployments"]] == ["COMPLETED"]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stop_resources(airflow_env) -> dict:
    """cat-stop's ECS service (rolling, deployment controller ECS) and Elastic Beanstalk environment, as
    include/sandbox/seed.py makes the example's; what each runs before the release."""
    ecs, eb = aws_client(airflow_env, "ecs"), aws_client(airflow_env, "elasticbeanstalk")
    ecs.create_cluster(clusterName=STOP_CLUSTER)
    baseline_task = ecs.register_task_definition(
        family=STOP_SERVICE,
        containerDefinitions=[
            {
                "name": STOP_CONTAINER,
                "image": f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}:baseline",
                "essential": True,
                "memory": 256,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=STOP_CLUSTER,
        serviceName=STOP_SERVICE,
        taskDefinition=baseline_task,
        desiredCount=1,
        launchType="EC2",
        deploymentController={"type": "ECS"},
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    eb.create_application(ApplicationName=STOP_APPLICATION)
    eb.create_application_version(
        ApplicationName=STOP_APPLICATION,
        VersionLabel=BASELINE_VERSION,
        SourceBundle={"S3Bucket": r.ARTIFACT_BUCKET, "S3Key": r.EB_BUNDLE_KEY},  # the seed's bundle
    )
    eb.create_environment(
        ApplicationName=STOP_APPLICATION,
        EnvironmentName=STOP_ENVIRONMENT,
        VersionLabel=BASELINE_VERSION,
        SolutionStackName="64bit Amazon Linux 2023 v4.3.0 running Python 3.11",
    )
    return {"task_definition": baseline_task, "version": BASELINE_VERSION}


@pytest.fixture(scope="module")
def faults(airflow_env, stop_resources):
    sandbox = SandboxClient(airflow_env.sandbox_url)
    try:
        sandbox.set_faults(FAULTS)
        yield FAULTS
    finally:
        sandbox.set_faults({service: dict.fromkeys(targets) for service, targets in FAULTS.items()})


@pytest.fixture(scope="module")
def background(airflow_env, api, faults) -> dict[str, str]:
    """The three runs, started at once; pipeline -> run id."""
    for dag_id in (EVERY_TYPE, FAILING, STOPPED):
        api.wait_for_dag(dag_id, timeout=RUN_TIMEOUT)
    started = {dag_id: api.trigger(dag_id)["dag_run_id"] for dag_id in (EVERY_TYPE, FAILING)}
    # The hang fault holds only a deployment replacing a completed one: the service's first must be done.
    ecs = aws_client(airflow_env, "ecs")
    wait_for(lambda: only_deployment_completed(ecs_service(ecs)), 30, 0.5, what=f"{STOP_SERVICE}'s first deployment")
    started[STOPPED] = api.trigger(STOPPED)["dag_run_id"]
    return started


# --- tests ------------------------------------------------------------------------------------


def test_every_catalogue_type_runs_in_one_release(api, airflow_env, background):
    run_id = background[EVERY_TYPE]
    run = wait_for_run(api, EVERY_TYPE, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", ti_states(api, EVERY_TYPE, run_id)

    def outputs(task_id: str) -> dict:
        return api.xcom(EVERY_TYPE, run_id, task_id)

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


def test_failing_stack_and_state_machine_fail_their_actions_with_the_aws_error(api, airflow_env, background):
    run_id = background[FAILING]
    run = wait_for_run(api, FAILING, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "failed"
    assert ti_states(api, FAILING, run_id) == {"Checks.Stack": "failed", "Checks.Smoke": "failed"}

    stack_failure = (
        f"Stack {FAIL_STACK} is ROLLBACK_COMPLETE (CREATE_UPDATE); first failure: Setting (AWS::SSM::Parameter) "
        "CREATE_FAILED: Resource handler returned message: \"sandbox fault 'fail'\""
    )
    assert stack_failure in task_log(api, FAILING, run_id, "Checks.Stack", containing=(stack_failure,))
    cloudformation = aws_client(airflow_env, "cloudformation")
    assert cloudformation.describe_stacks(StackName=FAIL_STACK)["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"

    [execution] = aws_client(airflow_env, "stepfunctions").list_executions(
        stateMachineArn=r.FAILING_STATE_MACHINE_ARN, statusFilter="FAILED"
    )["executions"]
    execution_failure = (
        f"Execution {execution['executionArn']} of state machine {r.FAILING_STATE_MACHINE_ARN} FAILED: "
        f"{r.FAILING_STATE_MACHINE_ERROR}: {r.FAILING_STATE_MACHINE_CAUSE}"
    )
    assert execution_failure in task_log(api, FAILING, run_id, "Checks.Smoke", containing=(execution_failure,))


def test_marking_waiting_deployments_failed_rolls_ecs_back_and_aborts_beanstalk(
    api, airflow_env, stop_resources, background
):
    run_id = background[STOPPED]
    ecs, eb = aws_client(airflow_env, "ecs"), aws_client(airflow_env, "elasticbeanstalk")
    for task_id in ("Deploy.Worker", "Deploy.Beanstalk"):
        wait_for_task_state(api, STOPPED, run_id, task_id, {"deferred"}, timeout=RUN_TIMEOUT)
    # Held by the faults: the service deploys the action's revision, the environment updates to its version.
    [deploying, _] = ecs_service(ecs)["deployments"]
    assert deploying["rolloutState"] == "IN_PROGRESS"
    assert deploying["taskDefinition"] != stop_resources["task_definition"]
    updating = eb_environment(eb)
    assert updating["Status"] == "Updating" and updating["VersionLabel"] != stop_resources["version"]

    for task_id in ("Deploy.Worker", "Deploy.Beanstalk"):
        api.set_task_state(STOPPED, run_id, task_id, "failed", note="abandoned by the test")

    # The stop updated the service back to its previous task definition, a deployment that completes.
    try:
        service = wait_for(
            lambda: only_deployment_completed(s := ecs_service(ecs)) and s,
            60,
            0.5,
            what=f"{STOP_SERVICE} to be rolled back",
        )
    except AssertionError as timeout:  # what the trigger did, for whoever reads the failure
        log = task_log(api, STOPPED, run_id, "Deploy.Worker")
        raise AssertionError(
            f"{timeout}; service now: {ecs_service(ecs)['deployments']}; log:\n{log[-3000:]}"
        ) from None
    assert service["taskDefinition"] == service["deployments"][0]["taskDefinition"] == stop_resources["task_definition"]
    # AbortEnvironmentUpdate: the environment is back on the version it ran.
    environment = wait_for(
        lambda: (e := eb_environment(eb))["Status"] == "Ready" and e,
        60,
        0.5,
        what=f"{STOP_ENVIRONMENT}'s update to be aborted",
    )
    assert environment["VersionLabel"] == stop_resources["version"]
    events = eb.describe_events(ApplicationName=STOP_APPLICATION, EnvironmentName=STOP_ENVIRONMENT)["Events"]
    assert "Abort environment update operation is complete." in [e["Message"] for e in events]

    run = wait_for_run(api, STOPPED, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "failed"
    assert ti_states(api, STOPPED, run_id) == {"Deploy.Worker": "failed", "Deploy.Beanstalk": "failed"}
