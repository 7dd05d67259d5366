"""Names of everything the sandbox seeds for the example pipeline (include/pipelines/webapp-release.yaml).

One place, so the seed step, the example spec, the demo and the tests agree.
"""

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
SECOND_REGION = "eu-west-1"  # the example's cross-region Lambda deploy

ARTIFACT_BUCKET = "release-artifacts"
# The artifact store of actions in SECOND_REGION (a pipeline's artifact_store maps each region to one).
SECOND_ARTIFACT_BUCKET = "release-artifacts-eu-west-1"
SERVICE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/release-service-role"

# CodeBuild
BUILD_PROJECT = "webapp-build"
TEST_PROJECT = "webapp-integration-tests"
COMMANDS_PROJECT = "release-commands"  # no source: where compute.commands actions run

# CodeDeploy: application -> deployment groups
EC2_APPLICATION = "webapp-ec2"
EC2_STAGING_GROUP = "staging"
EC2_PRODUCTION_GROUP = "production"
EC2_AUTOSCALING_GROUP = "webapp-asg"
ECS_APPLICATION = "webapp-ecs"
ECS_GROUP = "production"
LAMBDA_APPLICATION = "webapp-lambda"
LAMBDA_GROUP = "production"

# ECS
ECS_CLUSTER = "webapp"
ECS_SERVICE = "webapp-web"
ECS_TASK_FAMILY = "webapp-web"
ECS_CONTAINER = "web"
ECS_CONTAINER_PORT = 8080
ECR_REPOSITORY = "webapp"
# A service with the ECS deployment controller (rolling updates, deploy.ecs), circuit breaker with rollback on.
ECS_ROLLING_SERVICE = "webapp-worker"
ECS_ROLLING_TASK_FAMILY = "webapp-worker"
ECS_ROLLING_CONTAINER = "worker"

# Lambda
LAMBDA_FUNCTION = "webapp-api"
LAMBDA_ALIAS = "live"
# A python function for invoke.lambda actions (include/sample_app/release_check/handler.py), us-east-1 only,
# with version 1 and alias `live` (LAMBDA_ALIAS) -> 1.
RELEASE_CHECK_FUNCTION = "release-check"

# Step Functions: a machine that succeeds (Pass states adding a result to the input) and one that fails
SMOKE_STATE_MACHINE = "release-smoke-tests"
SMOKE_STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{SMOKE_STATE_MACHINE}"
FAILING_STATE_MACHINE = "release-failing-check"
FAILING_STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{FAILING_STATE_MACHINE}"
FAILING_STATE_MACHINE_ERROR = "SmokeTestFailed"
FAILING_STATE_MACHINE_CAUSE = "2 of 3 smoke checks failed"

# Elastic Beanstalk: an application with one environment running its first version
EB_APPLICATION = "webapp-eb"
EB_ENVIRONMENT = "webapp-eb-production"
EB_INITIAL_VERSION = "initial"
EB_BUNDLE_KEY = "webapp-eb/initial.zip"  # in ARTIFACT_BUCKET

# Notifications: the topic the pipeline publishes to, and a queue subscribed to it so
# the demo and the tests can read back what was published.
SNS_TOPIC = "release-notifications"
SNS_TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{SNS_TOPIC}"
INBOX_QUEUE = "release-notifications-inbox"

# Default local ports (tests pick free ports instead)
SANDBOX_PORT = 5055
AIRFLOW_PORT = 8080
