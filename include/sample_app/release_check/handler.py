"""A function written for a pipeline's invoke.lambda action: it checks a release and returns its findings.

UserParameters (JSON text): {"service": "webapp", "sleep": 0.5, "fail": "why", "report_failure": "why"}.
`fail` raises (the action fails with the error), `report_failure` returns a failed status (same outcome,
without a stack trace), `sleep` makes it take a while. Otherwise it returns output variables.
"""

import json
import time


def handler(event, context):
    job = event["CodePipeline.job"]
    configuration = job["data"]["actionConfiguration"]["configuration"]
    parameters = json.loads(configuration.get("UserParameters") or "{}")
    print(f"checking release for job {job['id']} with {parameters}")
    time.sleep(float(parameters.get("sleep", 0)))
    if parameters.get("fail"):
        raise RuntimeError(parameters["fail"])
    if parameters.get("report_failure"):
        return {"status": "failed", "message": parameters["report_failure"]}
    return {
        "status": "succeeded",
        "outputVariables": {
            "Service": parameters.get("service", "webapp"),
            "JobId": job["id"],
            "Version": context.function_version,
        },
    }
