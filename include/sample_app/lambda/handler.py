"""The webapp's API function: answers with the version that served the call."""

import json
import os


def handler(event, context):
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"service": "webapp-api", "version": version}),
    }
