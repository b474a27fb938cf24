#!/usr/bin/env python3
"""Drives `rxon orchestrator`'s admin API while a worker built on the reference
SDK (avtomatika-worker 1.0b20, see sdk_worker.py) serves it, and checks every outcome.

usage: sdk_tasks.py <orchestrator base URL> <SDK worker id> [<1.0b3 worker id>]

Waits (bounded) for the worker to register, then submits three tasks and waits for
each to end:
  echo  {"msg": "é", "n": 1.5, "nested": {...}}  -> success, result data == params,
                                                   progress 0.5 reported as an event
  fail  {"code": "PERMANENT_ERROR"}              -> failure with that code
  echo  {"k": [1, 2, 3]}                         -> success (a second task on one worker)
With a 1.0b3 worker id (py_b3_worker.py, serving "upper"), both generations are served
by the one orchestrator at once: an "upper" task goes to the 1.0b3 worker between the
SDK's tasks. Prints one line per check and exits 1 on the first difference.
"""

import json
import sys
import time
import urllib.request

BASE, WORKER = sys.argv[1], sys.argv[2]
B3_WORKER = sys.argv[3] if len(sys.argv) > 3 else None
DEADLINE = time.monotonic() + 90


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


def wait_until(what, probe):
    while time.monotonic() < DEADLINE:
        got = probe()
        if got:
            return got
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


worker = wait_until("the SDK worker to register",
                    lambda: next((w for w in call("GET", "/admin/workers") if w["worker_id"] == WORKER), None))
if sorted(worker["skills"]) != ["echo", "fail"]:
    fail(f"registered skills {worker['skills']}")
print(f"OK registered with skills {worker['skills']}", flush=True)
if B3_WORKER:
    old = wait_until("the 1.0b3 worker to register",
                     lambda: next((w for w in call("GET", "/admin/workers") if w["worker_id"] == B3_WORKER), None))
    print(f"OK 1.0b3 worker registered with skills {old['skills']}", flush=True)

cases = [
    ("echo", {"msg": "é", "n": 1.5, "nested": {"deep": [True, None, -3]}}, "success"),
    ("fail", {"code": "PERMANENT_ERROR", "message": "asked to fail"}, "failure"),
    ("echo", {"k": [1, 2, 3]}, "success"),
]
if B3_WORKER:
    cases.insert(1, ("upper", {"text": "both generations"}, "success"))
for task_type, params, want in cases:
    task_id = call("POST", "/admin/tasks", {"type": task_type, "params": params})["task_id"]
    state = wait_until(f"{task_id} to end",
                       lambda: (lambda s: s if s["state"] not in ("queued", "running") else None)(
                           call("GET", f"/admin/tasks/{task_id}")))
    result = state["result"] or {}
    if state["state"] != want:
        fail(f"{task_id} ({task_type}) ended {state['state']}, wanted {want}: {state}")
    if task_type == "upper":
        if result.get("worker_id") != B3_WORKER or result.get("data") != {"upper": "BOTH GENERATIONS"}:
            fail(f"{task_id} (1.0b3 worker) result {result}")
        print(f"OK {task_id} upper -> {state['state']} by the 1.0b3 worker", flush=True)
        continue
    if result.get("worker_id") != WORKER:
        fail(f"{task_id} result names worker {result.get('worker_id')!r}")
    if want == "success":
        if result.get("data") != params:
            fail(f"{task_id} data {result.get('data')} != params {params}")
        if state["progress"] != 0.5:
            fail(f"{task_id} progress {state['progress']}, wanted the 0.5 the SDK reports")
        if "execution_time_seconds" not in (result.get("costs") or {}):
            fail(f"{task_id} result has no costs.execution_time_seconds: {result}")
    else:
        error = result.get("error") or {}
        if error.get("code") != params["code"] or error.get("message") != params["message"]:
            fail(f"{task_id} error {error}")
    print(f"OK {task_id} {task_type} -> {state['state']}", flush=True)
print("DONE", flush=True)
