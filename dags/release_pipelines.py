"""Every pipeline spec in include/pipelines/ (or $RELEASE_ORCHESTRATOR_PIPELINES_DIR) as an Airflow DAG.

Valid specs become DAGs here; invalid ones are reported by release_pipeline_errors.py as an import
error, so one bad spec never hides the other pipelines.
"""

from release_orchestrator.pipeline.compiler import build_dags

# The DAG processor collects module-level DAG objects.
_dags, _errors = build_dags()
globals().update(_dags)
