"""Shows invalid pipeline specs as an import error in the Airflow UI (Dags > Import errors).

The DAGs of valid specs come from release_pipelines.py, so they keep loading while a spec is broken.
This file defines no DAG: it only fails to import, naming every bad spec file, line, stage, action
and field.
"""

# Named at top level so the dag-processor imports boto3 and the provider once, before forking
# its parsers, instead of in every parse.
import airflow.providers.amazon.aws.operators.base_aws  # noqa: F401

from release_orchestrator.pipeline.compiler import spec_errors_report

_report = spec_errors_report()
if _report:
    raise ImportError(_report)
