"""A pipeline's DAG schedule: its cron `schedule`, the sources its event-driven triggers watch, or both.

Each watched source is an Asset with one AssetWatcher whose trigger (SourceEventTrigger) reads the queue.
The asset's name and URI spell out everything the watcher depends on (source, queue, connection, region),
so pipelines watching the same source through the same queue share one asset and one trigger, and one
asset never gets two different watchers. With several sources the DAG runs when any of them changes
(AssetAny); with a cron schedule as well, on the schedule too (AssetOrTimeSchedule).
"""

from __future__ import annotations

from typing import Any

from release_orchestrator.events.sources import WatchedSource
from release_orchestrator.events.spec import watched_sources
from release_orchestrator.pipeline.model import Pipeline

ASSET_GROUP = "release-source"


def asset_for(source: WatchedSource):
    from airflow.sdk import Asset, AssetWatcher

    from release_orchestrator.events.trigger import SourceEventTrigger

    return Asset(
        name=source.asset_name(),
        uri=source.asset_uri(),
        group=ASSET_GROUP,
        watchers=[AssetWatcher(name=f"sqs-{source.queue}"[:200], trigger=SourceEventTrigger.for_source(source))],
    )


def pipeline_schedule(pipeline: Pipeline) -> Any:
    """What `DAG(schedule=...)` gets for this pipeline."""
    sources = watched_sources(pipeline)
    if not sources:
        return pipeline.schedule
    from airflow.sdk import AssetAny

    assets = [asset_for(source) for source in sources]
    condition = assets[0] if len(assets) == 1 else AssetAny(*assets)
    if not pipeline.schedule:
        return condition
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(pipeline.schedule, timezone=_default_timezone()), assets=condition
    )


def _default_timezone():
    """The timezone a DAG without a start date uses, as for a plain cron `schedule`."""
    from airflow import settings

    return settings.TIMEZONE
