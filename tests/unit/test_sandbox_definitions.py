"""The sandbox's small pieces of Step Functions and Elastic Beanstalk that need no server: how a state
machine definition ends, and how query-protocol parameters read."""

import json

import pytest

from include.sandbox.elasticbeanstalk import parse_form
from include.sandbox.stepfunctions import run_definition


def machine(**states) -> str:
    return json.dumps({"StartAt": next(iter(states)), "States": states})


@pytest.mark.parametrize(
    "definition, execution_input, expected",
    [
        (machine(A={"Type": "Pass", "End": True}), '{"a": 1}', ("SUCCEEDED", {"output": '{"a": 1}'})),
        (
            machine(
                A={"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.r.s", "Next": "B"}, B={"Type": "Succeed"}
            ),
            '{"a": 1}',
            ("SUCCEEDED", {"output": '{"a": 1, "r": {"s": {"ok": true}}}'}),
        ),
        (machine(A={"Type": "Pass", "Result": 7, "End": True}), "{}", ("SUCCEEDED", {"output": "7"})),
        (
            machine(A={"Type": "Choice", "Default": "F"}, F={"Type": "Fail", "Error": "E", "Cause": "C"}),
            "{}",
            ("FAILED", {"error": "E", "cause": "C"}),
        ),
        (
            machine(A={"Type": "Pass", "Next": "A"}),
            "{}",
            ("FAILED", {"error": "States.Runtime", "cause": "more than 1000 state transitions"}),
        ),
        (machine(A={"Type": "Pass", "Next": "Nowhere"}), "{}", ("FAILED", {"error": "States.Runtime"})),
    ],
    ids=["pass-through", "result-at-path", "result-replaces", "choice-default-to-fail", "loop", "missing-state"],
)
def test_how_a_definition_ends(definition, execution_input, expected):
    status, fields = run_definition(definition, execution_input)
    assert status == expected[0]
    assert {k: fields[k] for k in expected[1]} == expected[1]


def test_query_parameters_with_lists_and_structures():
    body = b"Action=DescribeEnvironments&EnvironmentIds.member.2=e-2&EnvironmentIds.member.1=e-1&SourceBundle.S3Key=a%2Fb.zip"
    assert parse_form(body) == {
        "Action": "DescribeEnvironments",
        "EnvironmentIds": ["e-1", "e-2"],
        "SourceBundle.S3Key": "a/b.zip",
    }
