"""An activity environment whose metrics land in a buffer a test can read: the Temporal
runtime's own metric pipeline, not a stand-in."""

from __future__ import annotations

from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment


class MeteredActivityEnvironment(ActivityEnvironment):
    def __init__(self) -> None:
        super().__init__()
        self._buffer = MetricBuffer(10_000)
        self._runtime = Runtime(telemetry=TelemetryConfig(metrics=self._buffer))
        self.metric_meter = self._runtime.metric_meter

    def counted(self, name: str) -> list[tuple[int | float, dict[str, str | int | float | bool]]]:
        """Each (increment, attributes) recorded on the counter ``name`` so far."""
        return [(update.value, dict(update.attributes))
                for update in self._buffer.retrieve_updates() if update.metric.name == name]
