"""A workflow whose payloads travel under every kind of serialization context a follow-up
uses (its own, an activity's, a child's), for ``tests/test_sandbox.py``."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def echo(text: str) -> str:
    return text


@workflow.defn
class Child:
    @workflow.run
    async def run(self, text: str) -> str:
        return f"child got {text}"


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, text: str) -> str:
        echoed = await workflow.execute_activity(
            echo, text, start_to_close_timeout=timedelta(seconds=30))
        return await workflow.execute_child_workflow(
            Child.run, echoed, id=f"{workflow.info().workflow_id}-child")
