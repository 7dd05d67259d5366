"""The Airflow plugin: serves the git webhook receiver from the api-server at /release-webhooks.

Endpoints: POST /release-webhooks/github, /bitbucket, /generic and GET /release-webhooks/health (docs/triggers.md).
Plugin apps are not behind Airflow's authentication; every delivery must carry a valid HMAC signature.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from release_orchestrator.webhooks.app import create_app

WEBHOOKS_URL_PREFIX = "/release-webhooks"


class ReleaseOrchestratorPlugin(AirflowPlugin):
    name = "release_orchestrator"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": WEBHOOKS_URL_PREFIX, "name": "Release webhooks"},
    ]
