"""The release console with the FAB auth manager (tests/integration/fab.py): FAB's per-DAG permissions decide
which pipelines a user sees, and what they may do with them.

fab-reader's only permission is reading one pipeline (ap-gate-fab); fab-outsider has FAB's `User` role (every
pipeline, and changing their runs).
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.fab import BASE_PATH, READABLE_PIPELINE, READER_ROLE

pytestmark = pytest.mark.integration


def console(fab_api_server, user: str) -> httpx.Client:
    """A client of the FAB api-server's release console, signed in as `user` (a bearer token)."""
    token = fab_api_server.client(user).authorization
    return httpx.Client(base_url=fab_api_server.url, headers={"Authorization": token}, timeout=30)


@pytest.fixture(scope="module")
def readable(api, fab_api_server) -> None:
    api.wait_for_dag(READABLE_PIPELINE, timeout=240)
    fab_api_server.grant_read(READER_ROLE, READABLE_PIPELINE)


def test_a_user_sees_only_the_pipelines_fab_lets_them_read_and_changes_none(fab_api_server, readable):
    reader, outsider = console(fab_api_server, "fab-reader"), console(fab_api_server, "fab-outsider")

    seen = [p["pipeline"] for p in reader.get("/releases/api/pipelines").json()["pipelines"]]
    assert seen == [READABLE_PIPELINE]
    everything = [p["pipeline"] for p in outsider.get("/releases/api/pipelines").json()["pipelines"]]
    assert READABLE_PIPELINE in everything and "webapp-release" in everything

    # Another pipeline looks the same as one that does not exist; its metrics and approvals are not shown.
    assert reader.get("/releases/api/pipelines/webapp-release/runs").status_code == 404
    assert set(reader.get("/releases/api/metrics").json()["pipelines"]) <= {READABLE_PIPELINE}
    assert {a["pipeline"] for a in reader.get("/releases/api/approvals").json()["approvals"]} <= {READABLE_PIPELINE}

    # Reading a pipeline is not changing it: the operations answer 403, naming who and what.
    disabled = reader.post(
        f"/releases/api/pipelines/{READABLE_PIPELINE}/stages/Approval/rollback", json={"reason": "just looking"}
    )
    assert disabled.status_code == 403 and "fab-reader may not roll back stages of" in disabled.json()["detail"]
    stopped = reader.post(f"/releases/api/pipelines/{READABLE_PIPELINE}/runs/any/stop", json={"reason": "x"})
    assert stopped.status_code == 403
    # Without a token: 401.
    assert httpx.get(f"{fab_api_server.url}/releases/api/pipelines", timeout=30).status_code == 401


def test_under_a_base_path_the_page_signs_in_and_links_there(fab_api_server):
    # fab.py serves Airflow under BASE_PATH: whoever is not signed in goes to its sign-in there, and back.
    page = httpx.get(f"{fab_api_server.url}/releases/", timeout=30)
    assert page.status_code == 303
    assert page.headers["location"] == f"{BASE_PATH}/auth/login?next={BASE_PATH}/releases/"
    token = fab_api_server.client("fab-outsider").authorization.removeprefix("Bearer ")
    signed_in = httpx.get(f"{fab_api_server.url}/releases/", cookies={"_token": token}, timeout=30)  # a browser's
    assert signed_in.status_code == 200 and "Releases" in signed_in.text
