#!/usr/bin/env python3
"""A worker on the stock avtomatika-worker 1.0b20 SDK with OpenTelemetry on
(WORKER_ENABLE_METRICS=true and the SDK's `metrics` extra installed), serving `trace`:
its result is the span the SDK opened for the task (`task.trace`), so the orchestrator's
side can check that the SDK continued the trace the task carried in tracing_context.

Result data: {"name", "trace_id", "span_id", "parent_span_id"} (lowercase hex; the
parent empty for a root span). Configuration as sdk_worker.py (the SDK's env).
"""

from opentelemetry import trace

from avtomatika_worker import Worker

worker = Worker()


@worker.skill("trace")
async def trace_skill(params: dict):
    span = trace.get_current_span()
    ctx = span.get_span_context()
    parent = getattr(span, "parent", None)
    return {
        "data": {
            "name": getattr(span, "name", ""),
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
            "parent_span_id": format(parent.span_id, "016x") if parent else "",
        }
    }


if __name__ == "__main__":
    worker.run()
