"""Preflight.Check: the first task of every run of a spec with `preflight: true`.

It makes the checks `python -m release_orchestrator check` makes (pipeline/preflight.py), planned when the
DAG is built and passed as plain data, through the connections' hooks, and fails the run with the table when
a resource is missing or on the wrong platform: before a build runs for an hour, not after.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from release_orchestrator.pipeline.preflight import HookAccess, PlannedCheck, failed, run_checks, summary, table


class PreflightOperator(BaseOperator):
    """Check every resource the pipeline's actions name; fail (without retries) when one check fails.

    :param checks: the planned checks, as dicts of `PlannedCheck` fields (preflight.plan). Not templated:
        spec text reaches no Jinja.
    """

    ui_color = "#fdf3e1"

    def __init__(self, *, checks: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = [dict(check) for check in checks]

    def execute(self, context: Any) -> dict[str, int]:
        rows = run_checks([PlannedCheck(**check) for check in self.checks], HookAccess())
        text = table(rows)
        if failed(rows):
            # A missing resource does not appear by retrying: fail the run now.
            raise AirflowFailException(f"Preflight found {len(failed(rows))} problem(s):\n{text}")
        self.log.info("Preflight:\n%s", text)
        return {key.capitalize(): value for key, value in summary(rows).items()}
