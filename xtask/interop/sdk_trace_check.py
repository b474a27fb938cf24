#!/usr/bin/env python3
"""Starts a trace at `rxon orchestrator` and checks that the reference SDK continues it.

usage: sdk_trace_check.py <orchestrator base URL> <SDK worker id>

Waits (bounded) for the worker (sdk_trace_worker.py) to register, submits a `trace`
task with a W3C `traceparent` header (and `tracestate`) on POST /admin/tasks, waits for
its result and checks that the SDK's task span has the header's trace id and its span
as parent. Prints one line per check; exits 1 on the first difference.
"""

import json
import secrets
import sys
import time
import urllib.request

BASE, WORKER = sys.argv[1], sys.argv[2]
DEADLINE = time.monotonic() + 90
TRACE_ID = secrets.token_hex(16)
SPAN_ID = secrets.token_hex(8)


def call(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=40) as r:
        return json.loads(r.read() or b"null")


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


while not any(w["worker_id"] == WORKER and w["status"] == "active" for w in call("GET", "/admin/workers")):
    if time.monotonic() > DEADLINE:
        fail(f"{WORKER} did not register")
    time.sleep(0.2)

headers = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "tracestate": "rxon=interop"}
task_id = call("POST", "/admin/tasks", {"type": "trace"}, headers)["task_id"]
task = call("GET", f"/admin/tasks/{task_id}?wait=30")
if task.get("state") != "success":
    fail(f"the trace task did not succeed: {task}")
span = task["result"]["data"]
print(f"INFO the SDK's span: {span}", flush=True)
if span["trace_id"] != TRACE_ID:
    fail(f"the SDK's span is in trace {span['trace_id']}, not {TRACE_ID}")
if span["parent_span_id"] != SPAN_ID:
    fail(f"the SDK's span has parent {span['parent_span_id']!r}, not {SPAN_ID}")
print(f"PASS the SDK's {span['name']} span continues trace {TRACE_ID} from span {SPAN_ID}", flush=True)
