"""The reference library rxon==1.0b17 (its HttpTransport, messages and signer) against
`rxon orchestrator`: every step is checked, contents included.

Usage: python py17_worker.py <base_url> <worker token> <orchestrator secret>
The orchestrator runs with `--token <worker token> --task-signing-key <secret>`.
Prints PASS/FAIL per step; exits 1 on any failure.
"""

import asyncio
import json
import sys
import time
import urllib.request
import uuid

from rxon.exceptions import RxonError
from rxon.models import (
    Heartbeat,
    ResourcesUsage,
    SkillInfo,
    TaskPayload,
    TaskResult,
    WorkerEventPayload,
    WorkerRegistration,
)
from rxon.security import sign_payload, verify_signature
from rxon.transports.http import HttpTransport
from rxon.utils import to_dict

URL, TOKEN, SECRET = sys.argv[1:4]
WORKER = "py17-worker"
failures = []


def step(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(name)


def sealed(message):
    """What a 1.0b17 worker sends: the message with a timestamp and its signature
    (keyed by the static token), as the SDK builds it."""
    d = to_dict(message)
    d["timestamp"] = int(time.time())
    d["security"] = {"signature": sign_payload(d, TOKEN), "signer_id": WORKER}
    return d


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


async def main():
    t = HttpTransport(base_url=URL, worker_id=WORKER, token=TOKEN)
    await t.connect()
    try:
        reg = WorkerRegistration(
            worker_id=WORKER,
            worker_type="cpu",
            supported_skills=[SkillInfo(name="echo", input_schema={"type": "object"})],
        )
        reply = await t._request("POST", "/_worker/workers/register", json=sealed(reg))
        step("signed registration accepted", reply == {"status": "registered", "version": "1.0b17"}, reply)
        workers = {w["worker_id"]: w for w in admin("GET", "/admin/workers")}
        step("registered with its skill objects' names", workers.get(WORKER, {}).get("skills") == ["echo"], workers)

        try:
            await t._request("POST", "/_worker/workers/register", json=to_dict(reg))
            step("an unsigned registration is refused", False, "accepted")
        except RxonError as e:
            step("an unsigned registration is refused with 403", "403" in str(e) and "timestamp" in str(e), e)

        hb = sealed(Heartbeat(worker_id=WORKER, status="idle", usage=ResourcesUsage(cpu_load_percent=12.5)))
        reply = await t.send_heartbeat(hb)
        step("signed heartbeat answered", isinstance(reply, dict), reply)
        try:
            await t.send_heartbeat(hb)
            step("a replayed heartbeat is refused", False, "accepted")
        except RxonError as e:
            step("a replayed heartbeat is refused with 403", "403" in str(e) and "Duplicate" in str(e), e)

        created = admin("POST", "/admin/tasks", {"type": "echo", "params": {"text": "é", "n": 2.5}})
        task = await t.poll_task(timeout=5)
        step("polled the task", isinstance(task, TaskPayload) and task.task_id == created["task_id"], task)
        step("task_id differs from job_id", task is not None and task.task_id != task.job_id, task)
        step(
            "the task's sig verifies with the orchestrator's secret (as the SDK checks it)",
            task is not None and verify_signature(task, task.sig, SECRET, ignore_fields=["sig", "orchestrator_signature"]),
            task,
        )
        step("a wrong secret does not verify it",
             task is not None and not verify_signature(task, task.sig, "wrong", ignore_fields=["sig"]), task)

        event = WorkerEventPayload(
            event_id=str(uuid.uuid4()), worker_id=WORKER, origin_worker_id=WORKER, event_type="progress",
            payload={"progress": 0.25, "message": "a quarter"}, origin_task_id=task.task_id,
            target_job_id=task.job_id, target_task_id=task.task_id,
        )
        reply = await t._request("POST", "/_worker/events", json=sealed(event))
        step("signed progress event accepted", reply == {"status": "event_accepted"}, reply)
        state = admin("GET", f"/admin/tasks/{task.task_id}")
        step("the orchestrator recorded the progress", state.get("progress") == 0.25, state)

        result = TaskResult(job_id=task.job_id, task_id=task.task_id, worker_id=WORKER,
                            data={"echo": task.params}, costs={"execution_time_seconds": 0.01})
        reply = await t._request("POST", "/_worker/tasks/result", json=sealed(result))
        step("signed result (no status: success) accepted", isinstance(reply, dict) and reply.get("status") != "ignored", reply)
        state = admin("GET", f"/admin/tasks/{task.task_id}")
        step("the orchestrator applied it as a success with its data",
             state.get("state") == "success" and (state.get("result") or {}).get("data") == {"echo": {"text": "é", "n": 2.5}},
             state)

        token = await t.refresh_token()
        step("STS token with a refresh token", token is not None and bool(token.refresh_token), token)
        again = await t.refresh_token()
        step("refresh endpoint issues a new access token",
             again is not None and again.access_token != token.access_token and again.refresh_token == token.refresh_token,
             again)
        reply = await t.send_heartbeat(sealed(Heartbeat(worker_id=WORKER, status="idle")))
        step("the refreshed token is accepted (envelope still keyed by the static token)", isinstance(reply, dict), reply)
        t.refresh_token_value = "rt-forged"
        forged = await t.refresh_token()
        step("a forged refresh token is refused", forged is None, forged)
    finally:
        await t.close()
    print(f"py17 worker: {len(failures)} failed", flush=True)
    return 1 if failures else 0


sys.exit(asyncio.run(main()))
