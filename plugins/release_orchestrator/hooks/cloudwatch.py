"""CloudWatch alarms, as a stage's CloudWatchAlarm entry rule reads them (the amazon provider has no hook)."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from release_orchestrator.hooks.base import aws_call


class CloudWatchHook(AwsBaseHook):
    """Interact with Amazon CloudWatch through boto3's ``cloudwatch`` client."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    def alarm_state(self, alarm_name: str) -> str | None:
        """The alarm's state (OK, ALARM, INSUFFICIENT_DATA), metric or composite; None when there is no such alarm."""
        with aws_call("DescribeAlarms", f"alarm '{alarm_name}'"):
            found = self.conn.describe_alarms(AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        alarms = found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])
        return alarms[0]["StateValue"] if alarms else None
