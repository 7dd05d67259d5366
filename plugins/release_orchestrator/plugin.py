"""The Airflow plugin: the git webhook receiver and the approval gate, both in the api-server.

Endpoints: POST /release-webhooks/github, /bitbucket, /generic and GET /release-webhooks/health (docs/triggers.md).
Plugin apps are not behind Airflow's authentication; every delivery must carry a valid HMAC signature.

The approval gate (gate/enforcement.py) is a root middleware: every decision on an approval, by any
REST or UI path, is checked against the action's approvers there (docs/security.md).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from release_orchestrator.gate.enforcement import ApprovalGateMiddleware
from release_orchestrator.webhooks.app import create_app

WEBHOOKS_URL_PREFIX = "/release-webhooks"


class ReleaseOrchestratorPlugin(AirflowPlugin):
    name = "release_orchestrator"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": WEBHOOKS_URL_PREFIX, "name": "Release webhooks"},
    ]
    fastapi_root_middlewares = [
        {"middleware": ApprovalGateMiddleware, "args": [], "kwargs": {}, "name": "Release approval gate"},
    ]
