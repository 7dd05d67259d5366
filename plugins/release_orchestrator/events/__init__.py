"""Event-driven AWS sources: CodeCommit pushes, ECR image pushes and S3 uploads start pipelines.

    AWS (CodeCommit / ECR / S3) --EventBridge rule--> SQS queue --SourceEventTrigger (triggerer)-->
        asset event --Airflow's event-driven scheduling--> DAG run --source action reads the event

- `spec`: the `triggers:` entries with `provider: s3 | ecr | codecommit` (validated with the spec);
- `sources`: reading EventBridge events (and S3 notifications) out of SQS messages, matching them
  against what a pipeline watches, and finding a run's revision in its triggering asset events;
- `assets`: the DAG schedule of a pipeline (an Asset per watched source, each with an AssetWatcher);
- `trigger`: the watcher's trigger: one shared SQS poll per queue in the triggerer, fanned out to
  every watched source, each keeping only its own events; a message is deleted once every watcher
  has looked at it and the asset events it caused are stored;
- `setup`: `python -m release_orchestrator.events setup` creates the queue and EventBridge rules.

See docs/triggers.md, "Event-driven sources".
"""
