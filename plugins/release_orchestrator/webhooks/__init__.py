"""Git webhooks that start pipelines: signature checks, payload parsing, trigger filters, the FastAPI app.

The app is served by the Airflow api-server through plugins/release_orchestrator/plugin.py; see docs/triggers.md.
"""
