"""The Airflow plugin: the git webhook receiver, the release console and the approval gate, in the api-server.

Endpoints: POST /release-webhooks/github, /bitbucket, /generic and GET /release-webhooks/health (docs/triggers.md).
Plugin apps are not behind Airflow's authentication: every delivery must carry a valid HMAC signature, and
the release console (/releases/, a "Releases" entry in Airflow's navigation, docs/ui.md) checks the signed-in
user on every request itself.

The approval gate (gate/enforcement.py) is a root middleware: every decision on an approval, by any
REST or UI path, is checked against the action's approvers there (docs/security.md).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from release_orchestrator.gate.enforcement import ApprovalGateMiddleware
from release_orchestrator.ui.app import UI_URL_PREFIX
from release_orchestrator.ui.app import create_app as create_console
from release_orchestrator.webhooks.app import create_app

WEBHOOKS_URL_PREFIX = "/release-webhooks"


class ReleaseOrchestratorPlugin(AirflowPlugin):
    name = "release_orchestrator"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": WEBHOOKS_URL_PREFIX, "name": "Release webhooks"},
        {"app": create_console(), "url_prefix": UI_URL_PREFIX, "name": "Release console"},
    ]
    external_views = [
        {"name": "Releases", "href": f"{UI_URL_PREFIX}/", "destination": "nav", "url_route": "releases"},
    ]
    fastapi_root_middlewares = [
        {"middleware": ApprovalGateMiddleware, "args": [], "kwargs": {}, "name": "Release approval gate"},
    ]
