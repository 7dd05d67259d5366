"""`iam-policy`: the least-privilege policy of the example pipeline, statement by statement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release_orchestrator.__main__ import main
from release_orchestrator.pipeline.iam import PolicyInputError, policy
from release_orchestrator.pipeline.loader import load_spec, load_spec_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "include" / "pipelines" / "webapp-release.yaml"
ACCOUNT = "123456789012"


def arn(service: str, rest: str, region: str = "us-east-1") -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{rest}"


EXPECTED = [
    {
        "Sid": "CodeBuildReadTestReportsOfTheProjectsReportGroups",
        "Action": ["codebuild:DescribeTestCases"],
        "Resource": [arn("codebuild", "report-group/webapp-integration-tests-*")],
    },
    {
        "Sid": "CodeBuildStartWatchAndStopBuildsOfTheNamedProjects",
        "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"],
        "Resource": [arn("codebuild", "project/webapp-build"), arn("codebuild", "project/webapp-integration-tests")],
    },
    {
        "Sid": "CodeDeployContinueAndTargetCallsNameADeploymentNotAGroup",
        "Action": [
            "codedeploy:BatchGetDeploymentTargets",
            "codedeploy:ContinueDeployment",
            "codedeploy:ListDeploymentTargets",
        ],
        "Resource": "*",
    },
    {
        "Sid": "CodeDeployCreateDeploymentReadsItsConfig",
        "Action": ["codedeploy:GetDeploymentConfig"],
        "Resource": [
            arn("codedeploy", "deploymentconfig:CodeDeployDefault.AllAtOnce"),
            arn("codedeploy", "deploymentconfig:CodeDeployDefault.ECSAllAtOnce"),
        ],
    },
    {
        # The Lambda deployment's config is #{variables.deploy_config_lambda}.
        "Sid": "CodeDeployCreateDeploymentReadsItsConfigNamedByAReference",
        "Action": ["codedeploy:GetDeploymentConfig"],
        "Resource": [arn("codedeploy", "deploymentconfig:*", "eu-west-1")],
    },
    {
        # The staging deployment names no config: the group's own is used.
        "Sid": "CodeDeployCreateDeploymentReadsTheGroupsConfigWhichTheSpecDoesNotName",
        "Action": ["codedeploy:GetDeploymentConfig"],
        "Resource": [arn("codedeploy", "deploymentconfig:*")],
    },
    {
        "Sid": "CodeDeployCreateDeploymentRegistersTheRevision",
        "Action": ["codedeploy:GetApplicationRevision", "codedeploy:RegisterApplicationRevision"],
        "Resource": [
            arn("codedeploy", "application:webapp-lambda", "eu-west-1"),
            arn("codedeploy", "application:webapp-ec2"),
            arn("codedeploy", "application:webapp-ecs"),
        ],
    },
    {
        "Sid": "CodeDeployDeployToTheNamedGroupsAndStop",
        "Action": [
            "codedeploy:BatchGetDeployments",
            "codedeploy:CreateDeployment",
            "codedeploy:GetDeployment",
            "codedeploy:ListDeployments",
            "codedeploy:StopDeployment",
        ],
        "Resource": [
            arn("codedeploy", "deploymentgroup:webapp-lambda/production", "eu-west-1"),
            arn("codedeploy", "deploymentgroup:webapp-ec2/production"),
            arn("codedeploy", "deploymentgroup:webapp-ec2/staging"),
            arn("codedeploy", "deploymentgroup:webapp-ecs/production"),
        ],
    },
    {
        "Sid": "EcsRegisterTaskDefinitionHasNoResourceLevelPermissions",
        "Action": ["ecs:RegisterTaskDefinition"],
        "Resource": "*",
    },
    {
        # The task definition is read from the build's artifact when the run gets there: the roles it names are
        # not known before, so any role of the account, passed to ECS only.
        "Sid": "IamPassTheArtifactTaskDefinitionsRolesToEcs",
        "Action": ["iam:PassRole"],
        "Resource": [f"arn:aws:iam::{ACCOUNT}:role/*"],
        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
    },
    {
        "Sid": "LambdaPublishAVersionAndReadTheAliasToShift",
        "Action": ["lambda:GetAlias", "lambda:PublishVersion"],
        "Resource": [arn("lambda", "function:webapp-api", "eu-west-1")],
    },
    {
        "Sid": "LambdaUpdateTheCodeFromTheArtifact",
        "Action": ["lambda:UpdateFunctionCode"],
        "Resource": ["arn:aws:lambda:eu-west-1:123456789012:function:webapp-api"],
    },
    {
        "Sid": "LogsTailOfTheBuildLogInTheProjectsDefaultLogGroup",
        "Action": ["logs:GetLogEvents"],
        "Resource": [
            arn("logs", "log-group:/aws/codebuild/webapp-build:*"),
            arn("logs", "log-group:/aws/codebuild/webapp-integration-tests:*"),
        ],
    },
    {
        # The artifact store, only under the pipeline's own folder.
        "Sid": "S3ReadTheRunsInputArtifacts",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": [
            "arn:aws:s3:::release-artifacts-eu-west-1/runs/webapp-release/*",
            "arn:aws:s3:::release-artifacts/runs/webapp-release/*",
        ],
    },
    {
        "Sid": "S3WriteTheRunsArtifacts",
        "Action": ["s3:PutObject"],
        "Resource": [
            "arn:aws:s3:::release-artifacts-eu-west-1/runs/webapp-release/*",
            "arn:aws:s3:::release-artifacts/runs/webapp-release/*",
        ],
    },
    {
        "Sid": "SnsPublishNotificationsAndApprovalRequests",
        "Action": ["sns:Publish"],
        "Resource": [arn("sns", "release-notifications")],
    },
]


def test_the_example_policy_has_exactly_these_statements():
    document = policy(load_spec(EXAMPLE), region="us-east-1")
    assert document["Version"] == "2012-10-17"
    assert document["Statement"] == [{**s, "Effect": "Allow"} for s in EXPECTED]
    for statement in document["Statement"]:  # IAM allows letters and digits only in a Sid
        assert statement["Sid"].isalnum()


def test_the_cli_prints_the_policy_and_takes_the_account_from_the_option(capsys):
    assert main(["iam-policy", str(EXAMPLE), "--region", "us-east-1", "--account-id", "111122223333"]) == 0
    document = json.loads(capsys.readouterr().out)
    resources = [r for s in document["Statement"] for r in ([s["Resource"]] if s["Resource"] == "*" else s["Resource"])]
    assert "arn:aws:codebuild:us-east-1:111122223333:project/webapp-build" in resources
    # ARNs the spec writes out keep their own account.
    assert f"arn:aws:sns:us-east-1:{ACCOUNT}:release-notifications" in resources


SOURCES = """
pipeline:
  name: sources
  region: eu-central-1
  triggers:
    - provider: ecr
      repository: webapp
      image_tag: release
      queue: webapp-events
  stages:
    - name: Source
      actions:
        - name: Bundle
          type: source.s3
          configuration: {bucket: artifacts, object_key: app/app.zip}
        - name: Image
          type: source.ecr
          configuration: {repository: webapp}
        - name: Repo
          type: source.codecommit
          configuration: {repository: webapp, branch: main}
    - name: Approve
      actions:
        - name: Lead
          type: approval.manual
          configuration: {sns_topic_arn: "arn:aws:sns:eu-central-1:444455556666:approvals"}
"""


def test_sources_and_approval_topics_are_scoped_to_what_the_spec_names():
    statements = {s["Sid"]: s for s in policy(load_spec_text(SOURCES))["Statement"]}
    assert statements["S3SourceReadsTheWatchedObjectsVersions"]["Resource"] == ["arn:aws:s3:::artifacts/app/app.zip"]
    assert statements["S3SourceReadsTheWatchedObjectsVersions"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert statements["EcrSourceReadsTheWatchedImage"]["Resource"] == [
        "arn:aws:ecr:eu-central-1:444455556666:repository/webapp"
    ]
    assert statements["SnsPublishNotificationsAndApprovalRequests"]["Resource"] == [
        "arn:aws:sns:eu-central-1:444455556666:approvals"
    ]
    assert statements["SqsReadTheEventTriggersQueue"]["Action"] == [
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert statements["SqsReadTheEventTriggersQueue"]["Resource"] == [
        "arn:aws:sqs:eu-central-1:444455556666:webapp-events"
    ]
    # The CodeCommit source reads the commit and its files, in its repository only.
    assert statements["CodeCommitSourceReadsTheRepository"] == {
        "Sid": "CodeCommitSourceReadsTheRepository",
        "Effect": "Allow",
        "Action": ["codecommit:GetBranch", "codecommit:GetCommit", "codecommit:GetFile", "codecommit:GetFolder"],
        "Resource": ["arn:aws:codecommit:eu-central-1:444455556666:webapp"],
    }


def test_no_account_anywhere_is_an_error(capsys, tmp_path):
    spec = SOURCES.replace("444455556666", "").replace(
        'configuration: {sns_topic_arn: "arn:aws:sns:eu-central-1::approvals"}', "configuration: {}"
    )
    with pytest.raises(PolicyInputError, match="give --account-id"):
        policy(load_spec_text(spec))
    path = tmp_path / "sources.yaml"
    path.write_text(spec)
    assert main(["iam-policy", str(path)]) == 2
    assert "give --account-id" in capsys.readouterr().err


SITE = """
pipeline:
  name: site
  region: us-east-1
  stages:
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          namespace: Build
          configuration: {project_name: site-build}
    - name: Deploy
      actions:
        - name: Website
          type: deploy.s3
          configuration:
            bucket_name: site-www
            source: "s3://release-artifacts/#{Build.ARTIFACT_KEY}"
            object_key: releases/v1/
            canned_acl: public-read
            kms_encryption_key_arn: arn:aws:kms:us-east-1:123456789012:key/k1
        - name: Archive
          type: deploy.s3
          configuration: {bucket_name: site-archive, source: "s3://release-artifacts/site.zip", extract: false,
                          object_key: site.zip}
        - name: Smoke
          type: invoke.lambda
          run_order: 2
          configuration: {function_name: "site-smoke:live"}
"""


def test_s3_deploys_and_lambda_invokes_are_scoped_to_what_the_spec_names():
    statements = {s["Sid"]: s for s in policy(load_spec_text(SITE))["Statement"]}
    assert statements["S3DeployReadsTheArtifact"]["Resource"] == ["arn:aws:s3:::release-artifacts/site.zip"]
    assert statements["S3DeployReadsTheArtifactNamedByAReference"]["Resource"] == ["arn:aws:s3:::release-artifacts/*"]
    assert statements["S3DeployReadsTheArtifact"]["Action"] == ["s3:GetObject"]
    puts = {json.dumps(s["Action"]): s["Resource"] for sid, s in statements.items() if sid.startswith("S3DeployPuts")}
    assert puts == {
        # extracted: every object under the prefix; a canned ACL needs PutObjectAcl too
        '["s3:PutObject", "s3:PutObjectAcl"]': ["arn:aws:s3:::site-www/releases/v1/*"],
        '["s3:PutObject"]': ["arn:aws:s3:::site-archive/site.zip"],  # copied: the one key
    }
    assert statements["KmsEncryptTheDeployedObjects"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statements["KmsEncryptTheDeployedObjects"]["Resource"] == ["arn:aws:kms:us-east-1:123456789012:key/k1"]
    assert statements["LambdaInvokeTheNamedFunction"] == {
        "Sid": "LambdaInvokeTheNamedFunction",
        "Effect": "Allow",
        "Action": ["lambda:InvokeFunction"],
        "Resource": [arn("lambda", "function:site-smoke:live")],
    }


BEANSTALK_AND_STEPFUNCTIONS = Path(__file__).parent / "fixtures" / "specs" / "beanstalk-and-stepfunctions.yaml"


def test_step_functions_and_elastic_beanstalk_are_scoped_to_the_machine_and_the_environment():
    statements = {s["Sid"]: s for s in policy(load_spec(BEANSTALK_AND_STEPFUNCTIONS))["Statement"]}
    assert statements["StatesStartExecutionsOfTheNamedStateMachine"]["Action"] == ["states:StartExecution"]
    assert statements["StatesStartExecutionsOfTheNamedStateMachine"]["Resource"] == [
        arn("states", "stateMachine:release-smoke-tests")
    ]
    assert statements["StatesWatchAndStopTheMachinesExecutions"]["Action"] == [
        "states:DescribeExecution",
        "states:StopExecution",
    ]
    assert statements["StatesWatchAndStopTheMachinesExecutions"]["Resource"] == [
        arn("states", "execution:release-smoke-tests:*")
    ]
    assert statements["ElasticBeanstalkUpdateWatchAndAbortTheNamedEnvironment"]["Resource"] == [
        arn("elasticbeanstalk", "environment/webapp-eb/webapp-eb-production")
    ]
    assert (
        "elasticbeanstalk:UpdateEnvironment"
        in statements["ElasticBeanstalkUpdateWatchAndAbortTheNamedEnvironment"]["Action"]
    )
    assert statements["ElasticBeanstalkMakeTheApplicationVersionToDeploy"]["Resource"] == [
        arn("elasticbeanstalk", "applicationversion/webapp-eb/*")
    ]
    assert statements["S3ReadTheSourceBundle"]["Resource"] == ["arn:aws:s3:::release-artifacts/webapp-eb/initial.zip"]
    # What the update does with the caller's rights: the environment's CloudFormation stack among others.
    assert statements["CloudFormationTheEnvironmentsStackUpdatedWithTheCallersRights"]["Resource"] == [
        arn("cloudformation", "stack/awseb-*")
    ]


STACK = """
pipeline:
  name: stacks
  region: eu-central-1
  stages:
    - name: Infra
      actions:
        - name: Stack
          type: deploy.cloudformation
          configuration:
            action_mode: CREATE_UPDATE
            stack_name: webapp
            template: s3://templates/webapp.yaml
            role_arn: arn:aws:iam::444455556666:role/cfn-deploy
"""


def test_cloudformation_is_scoped_to_the_stack_and_passes_only_its_role():
    statements = {s["Sid"]: s for s in policy(load_spec_text(STACK), account_id="444455556666")["Statement"]}
    stack = statements["CloudFormationDeployTheNamedStacksAndTheirChangeSets"]
    assert stack["Resource"] == ["arn:aws:cloudformation:eu-central-1:444455556666:stack/webapp/*"]
    assert {"cloudformation:CreateStack", "cloudformation:CancelUpdateStack", "cloudformation:ExecuteChangeSet"} <= set(
        stack["Action"]
    )
    passing = statements["IamPassTheStacksServiceRoleToCloudFormation"]
    assert (passing["Action"], passing["Resource"]) == (["iam:PassRole"], ["arn:aws:iam::444455556666:role/cfn-deploy"])
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
    assert statements["S3ReadTheTemplateAndItsConfiguration"]["Resource"] == ["arn:aws:s3:::templates/webapp.yaml"]


def test_ecs_deploy_and_commands_permissions():
    from tests.unit.test_preflight import ECS_AND_COMMANDS

    statements = {s["Sid"]: s for s in policy(load_spec_text(ECS_AND_COMMANDS), account_id="123456789012")["Statement"]}
    service = statements["EcsReadAndUpdateTheDeployedService"]
    assert service["Action"] == ["ecs:DescribeServices", "ecs:UpdateService"]
    assert service["Resource"] == ["arn:aws:ecs:us-east-1:123456789012:service/webapp/webapp-worker"]
    assert statements["EcsTaskDefinitionCallsHaveNoResourceLevelPermissions"]["Action"] == [
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",
    ]
    pass_role = statements["IamPassTheTaskDefinitionsRolesToEcs"]
    assert pass_role["Resource"] == ["arn:aws:iam::123456789012:role/*"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # compute.commands needs what build.codebuild needs, on its project.
    assert statements["CodeBuildStartWatchAndStopBuildsOfTheNamedProjects"]["Resource"] == [
        "arn:aws:codebuild:us-east-1:123456789012:project/release-commands"
    ]


def preflight_statements(document: dict) -> list[dict]:
    return [s for s in document["Statement"] if s["Sid"].startswith("Preflight")]


def test_preflight_true_grants_the_check_tasks_read_calls_on_what_it_looks_up():
    text = EXAMPLE.read_text().replace("  execution_mode: QUEUED\n", "  execution_mode: QUEUED\n  preflight: true\n")
    document = policy(load_spec_text(text, source=str(EXAMPLE)), region="us-east-1")
    assert preflight_statements(document) == [
        {
            # Only when a project is missing, to suggest the nearest name.
            "Sid": "PreflightListsCodeBuildProjectsToSuggestANameNoResourceScope",
            "Effect": "Allow",
            "Action": ["codebuild:ListProjects"],
            "Resource": "*",
        },
        {
            "Sid": "PreflightReadsTheCodeBuildProjects",
            "Effect": "Allow",
            "Action": ["codebuild:BatchGetProjects"],
            "Resource": [
                arn("codebuild", "project/webapp-build"),
                arn("codebuild", "project/webapp-integration-tests"),
            ],
        },
        {
            "Sid": "PreflightReadsTheCodeDeployApplications",
            "Effect": "Allow",
            "Action": ["codedeploy:GetApplication"],
            "Resource": [
                arn("codedeploy", "application:webapp-lambda", "eu-west-1"),
                arn("codedeploy", "application:webapp-ec2"),
                arn("codedeploy", "application:webapp-ecs"),
            ],
        },
        {
            # The Lambda deployment's config is a reference: the check skips it, so nothing is granted for it.
            "Sid": "PreflightReadsTheCodeDeployConfigs",
            "Effect": "Allow",
            "Action": ["codedeploy:GetDeploymentConfig"],
            "Resource": [
                arn("codedeploy", "deploymentconfig:CodeDeployDefault.AllAtOnce"),
                arn("codedeploy", "deploymentconfig:CodeDeployDefault.ECSAllAtOnce"),
            ],
        },
        {
            "Sid": "PreflightReadsTheCodeDeployGroups",
            "Effect": "Allow",
            "Action": ["codedeploy:GetDeploymentGroup"],
            "Resource": [
                arn("codedeploy", "deploymentgroup:webapp-lambda/production", "eu-west-1"),
                arn("codedeploy", "deploymentgroup:webapp-ec2/production"),
                arn("codedeploy", "deploymentgroup:webapp-ec2/staging"),
                arn("codedeploy", "deploymentgroup:webapp-ecs/production"),
            ],
        },
        {
            "Sid": "PreflightReadsTheLambdaFunctions",
            "Effect": "Allow",
            "Action": ["lambda:GetAlias", "lambda:GetFunction"],
            "Resource": [arn("lambda", "function:webapp-api", "eu-west-1")],
        },
        {
            "Sid": "PreflightHeadsTheBuckets",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::release-artifacts", "arn:aws:s3:::release-artifacts-eu-west-1"],
        },
        {
            "Sid": "PreflightReadsTheSnsTopics",
            "Effect": "Allow",
            "Action": ["sns:GetTopicAttributes"],
            "Resource": [arn("sns", "release-notifications")],
        },
    ]
    # The actions' own statements are unchanged; without `preflight: true` there are no others.
    assert [s for s in document["Statement"] if not s["Sid"].startswith("Preflight")] == [
        {**s, "Effect": "Allow"} for s in EXPECTED
    ]
    assert preflight_statements(policy(load_spec(EXAMPLE), region="us-east-1")) == []


def test_preflight_of_stacks_roles_ecs_services_and_the_artifact_store():
    from tests.unit.test_preflight import ECS_AND_COMMANDS, STACKS

    stacks = STACKS.replace("  region: us-east-1\n", "  region: us-east-1\n  preflight: true\n")
    statements = {s["Sid"]: s for s in preflight_statements(policy(load_spec_text(stacks)))}
    assert statements["PreflightReadsTheRolesAndTheirTrustPolicies"]["Resource"] == [
        "arn:aws:iam::123456789012:role/cfn-deploy"
    ]
    assert statements["PreflightReadsTheStacks"]["Action"] == ["cloudformation:DescribeStacks"]
    assert statements["PreflightReadsTheStacks"]["Resource"] == [arn("cloudformation", "stack/webapp/*")]

    worker = ECS_AND_COMMANDS.replace(
        "  region: us-east-1\n", "  region: us-east-1\n  preflight: true\n  artifact_store: s3://worker-runs/x\n"
    )
    statements = {s["Sid"]: s for s in preflight_statements(policy(load_spec_text(worker), account_id=ACCOUNT))}
    assert statements["PreflightReadsTheEcsClusters"]["Resource"] == [arn("ecs", "cluster/webapp")]
    assert statements["PreflightReadsTheEcsServices"]["Resource"] == [arn("ecs", "service/webapp/webapp-worker")]
    assert statements["PreflightReadsTheCodeBuildProjects"]["Resource"] == [
        arn("codebuild", "project/release-commands")
    ]
    assert statements["PreflightHeadsTheBuckets"]["Resource"] == ["arn:aws:s3:::worker-runs"]


# One check of each kind, with every detail its checker reads, so it makes all of its calls.
SAMPLE_CHECKS = {
    "credentials": ("conn", {}),
    "codebuild_project": ("webapp-build", {}),
    "codedeploy_group": ("webapp-ec2", {"group": "staging", "platform": "server", "config": "OneAtATime"}),
    "ecr_repository": ("webapp", {}),
    "s3_bucket": ("artifacts", {"versioned": True}),
    "codecommit_repository": ("webapp", {}),
    "sns_topic": (arn("sns", "topic"), {}),
    "lambda_function": ("webapp-api", {"alias": "live"}),
    "stepfunctions_state_machine": (arn("states", "stateMachine:smoke"), {}),
    "elasticbeanstalk_environment": ("webapp-eb", {"environment": "production"}),
    "iam_role": (f"arn:aws:iam::{ACCOUNT}:role/cfn-deploy", {"service": "cloudformation.amazonaws.com"}),
    "cloudformation_stack": ("webapp", {}),
    "ecs_service": ("worker", {"cluster": "webapp"}),
}

# What a client answers when the resource is there, and (for calls whose answer says so) when it is not.
FOUND = {
    "get_caller_identity": {"Account": ACCOUNT, "Arn": "arn"},
    "batch_get_projects": {"projects": [{"name": "webapp-build"}]},
    "list_projects": {"projects": []},
    "get_application": {"application": {"computePlatform": "Server"}},
    "get_deployment_group": {"deploymentGroupInfo": {"computePlatform": "Server"}},
    "get_deployment_config": {"deploymentConfigInfo": {"computePlatform": "Server"}},
    "get_bucket_versioning": {"Status": "Enabled"},
    "describe_state_machine": {"type": "STANDARD"},
    "describe_applications": {"Applications": [{"ApplicationName": "webapp-eb"}]},
    "describe_environments": {"Environments": [{"EnvironmentName": "production"}]},
    "get_role": {"Role": {"AssumeRolePolicyDocument": {}}},
    "describe_stacks": {"Stacks": [{"StackStatus": "CREATE_COMPLETE"}]},
    "describe_clusters": {"clusters": [{"status": "ACTIVE"}]},
    "describe_services": {"services": [{"status": "ACTIVE"}]},
}
MISSING = {**FOUND, "batch_get_projects": {"projects": []}, "describe_applications": {"Applications": []}}
# IAM actions whose names are not the API call's, and calls IAM never denies.
IAM_ACTION = {"s3:HeadBucket": "s3:ListBucket"}
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}


class RecordingAccess:
    """Clients that record each call the checkers make and answer from `answers`."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.calls = answers, set()

    def connection(self, aws_conn_id):
        return f"connection {aws_conn_id}", None

    def client(self, service, region, aws_conn_id):
        access, prefix = self, {"stepfunctions": "states"}.get(service, service)

        class Client:
            def __getattr__(self, operation):
                def call(**kwargs):
                    action = f"{prefix}:" + "".join(part.capitalize() for part in operation.split("_"))
                    access.calls.add(IAM_ACTION.get(action, action))
                    return access.answers.get(operation, {})

                return call

        return Client()


def test_every_checker_kind_declares_exactly_the_permissions_of_the_calls_it_makes():
    from release_orchestrator.pipeline.preflight import CHECKERS, PlannedCheck

    assert set(SAMPLE_CHECKS) == set(CHECKERS), "give each checker kind a sample check"
    for kind, (name, details) in SAMPLE_CHECKS.items():
        check = PlannedCheck("Stage", "Action", kind, name, details, "us-east-1", "conn")
        made = set()
        for answers in (FOUND, MISSING):  # a missing resource makes calls a found one does not (suggestions)
            access = RecordingAccess(answers)
            CHECKERS[kind].check(access, check)
            made |= access.calls - NEEDS_NO_PERMISSION
        declared = CHECKERS[kind].permissions(check)
        assert {action for p in declared for action in p.actions} == made, kind
        for permission in declared:
            assert permission.sid.startswith("Preflight") and permission.sid.isalnum(), permission.sid
            assert permission.resource != "*" or permission.sid.endswith("NoResourceScope"), permission.sid
