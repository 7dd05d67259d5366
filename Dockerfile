# The image every Airflow service in docker-compose.yaml runs (and the sandbox, too).
#
# Two stages, both on the official Airflow image:
#   build - builds the release-orchestrator wheel from pyproject.toml and plugins/release_orchestrator,
#           with the build tools pinned in constraints.txt;
#   final - the official image plus this project's pinned dependencies and that wheel, installed in
#           one pip run with the same constraints file the local .venv and CI use.
# The tag's Airflow version must equal the apache-airflow pin in requirements.txt, and the wheel's file
# name the version in pyproject.toml (tests/unit/test_docker_compose.py checks both); the Python
# version matches the one constraints.txt was frozen with (Makefile: PYTHON ?= python3.11).
#
# The package (operators, hooks, triggers, and the webhook plugin through its `airflow.plugins` entry
# point) comes from the wheel, so docker-compose.yaml does not mount plugins/; it mounts DAGs and
# include/. See docs/install.md.
FROM apache/airflow:3.3.2-python3.11 AS build

COPY --chown=airflow:0 constraints.txt pyproject.toml /tmp/release-orchestrator/
COPY --chown=airflow:0 plugins/release_orchestrator /tmp/release-orchestrator/plugins/release_orchestrator

# Runs as the image's default `airflow` user, as the official image expects for pip installs.
RUN pip install --no-cache-dir build hatchling -c /tmp/release-orchestrator/constraints.txt \
    && python -m build --wheel --no-isolation --outdir /tmp/dist /tmp/release-orchestrator

FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/
COPY --from=build --chown=airflow:0 /tmp/dist/ /opt/airflow/wheels/

RUN pip install --no-cache-dir \
        -r /opt/airflow/requirements/requirements.txt \
        /opt/airflow/wheels/release_orchestrator-0.1.0-py3-none-any.whl \
        -c /opt/airflow/requirements/constraints.txt
