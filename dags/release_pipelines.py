"""Every pipeline spec in include/pipelines/ (or $RELEASE_ORCHESTRATOR_PIPELINES_DIR) as an Airflow DAG.

Valid specs become DAGs here; invalid ones are reported by release_pipeline_errors.py as an import
error, so one bad spec never hides the other pipelines.
"""

# Named at top level so the dag-processor imports boto3 and the provider once, before forking
# its parsers, instead of in every parse.
import airflow.providers.amazon.aws.operators.base_aws  # noqa: F401

from release_orchestrator.pipeline.compiler import build_dags

# The DAG processor collects module-level DAG objects.
_dags, _errors = build_dags()
globals().update(_dags)
