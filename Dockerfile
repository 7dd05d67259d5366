# The image every Airflow service in docker-compose.yaml runs (and the sandbox, too).
#
# The official Airflow image, plus this project's pinned dependencies, installed once at build time
# with the same constraints file the local .venv and CI use. The tag's Airflow version must equal the
# apache-airflow pin in requirements.txt (tests/unit/test_docker_compose.py checks it); the Python
# version matches the one constraints.txt was frozen with (Makefile: PYTHON ?= python3.11).
#
# DAGs, plugins and include/ are mounted by docker-compose.yaml rather than copied in here.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/

# Runs as the image's default `airflow` user, as the official image expects for pip installs.
RUN pip install --no-cache-dir \
        -r /opt/airflow/requirements/requirements.txt \
        -c /opt/airflow/requirements/constraints.txt
