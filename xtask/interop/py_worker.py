"""The Python reference HttpTransport (rxon==1.0b3) against a Rust HttpListener.

Usage: python py_worker.py <base_url>. Prints PASS/FAIL per step; exits 1 on any failure.
The Rust side (`rxon-http/examples/interop_listener.rs`) accepts the token "good",
issues STS tokens for the credential "bootstrap", and has queued, for skill "echo":
t-ok, t-fail, t-late (whose deadline has passed), t-cmd (cancelled through the command
channel once this worker opens it).
"""

import asyncio
import sys

from rxon.exceptions import RxonAuthError
from rxon.models import (
    Heartbeat,
    InstalledModel,
    ProgressUpdatePayload,
    Resources,
    TaskError,
    TaskResult,
    WorkerCapabilities,
    WorkerRegistration,
)
from rxon.transports.http import HttpTransport

failures = []


def step(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)
    if not ok:
        failures.append(name)


def registration():
    return WorkerRegistration(
        worker_id="py-worker",
        worker_type="cpu",
        supported_skills=["echo"],
        resources=Resources(max_concurrent_tasks=2, cpu_cores=4),
        installed_software={"python": "3.11"},
        installed_models=[InstalledModel(name="m", version="1")],
        capabilities=WorkerCapabilities(hostname="h", ip_address="127.0.0.1", cost_per_skill={"echo": 0.5}),
    )


async def main(url):
    t = HttpTransport(base_url=url, worker_id="py-worker", token="bootstrap", result_retry_delay=0.01)
    await t.connect()
    try:
        reply = await t.register(registration())
        step("register after 401 + STS refresh", isinstance(reply, dict) and reply.get("status") == "registered", reply)
        step("token replaced by the STS token", t.token != "bootstrap", t.token)

        hb = await t.send_heartbeat(
            Heartbeat(worker_id="py-worker", status="idle", load=0.0, current_tasks=[], supported_skills=["echo"], hot_cache=[])
        )
        step("heartbeat", isinstance(hb, dict) and hb.get("cancel_task_ids", []) == [], hb)

        task = await t.poll_task(timeout=5)
        step("poll with a task", task is not None and task.task_id == "t-ok" and task.params.get("text") == "hello", task)
        ok = await t.send_result(
            TaskResult(job_id=task.job_id, task_id=task.task_id, worker_id="py-worker", status="success", data={"echo": "hello"})
        )
        step("success result accepted", ok is True, ok)

        task = await t.poll_task(timeout=5)
        step("poll second task", task is not None and task.task_id == "t-fail", task)
        ok = await t.send_result(
            TaskResult(
                job_id=task.job_id,
                task_id=task.task_id,
                worker_id="py-worker",
                status="failure",
                error=TaskError(code="INVALID_INPUT_ERROR", message="bad", details={"field": "text"}),
            )
        )
        step("failure result accepted", ok is True, ok)

        task = await t.poll_task(timeout=5)
        step("poll late task", task is not None and task.task_id == "t-late", task)
        ok = await t.send_result(TaskResult(job_id=task.job_id, task_id=task.task_id, worker_id="py-worker", status="success", data={}))
        step("late result ignored (deadline_exceeded)", ok is False, ok)

        ok = await t.send_result(TaskResult(job_id="job-x", task_id="t-ghost", worker_id="py-worker", status="success", data={}))
        step("unknown task ignored (job_not_found)", ok is False, ok)

        task = await t.poll_task(timeout=5)
        step("poll the task to be cancelled", task is not None and task.task_id == "t-cmd", task)

        first = asyncio.get_running_loop().create_future()

        async def listen():
            # Keep the socket open after the first command: progress goes over it.
            async for command in t.listen_for_commands():
                if not first.done():
                    first.set_result(command)

        listener = asyncio.create_task(listen())
        # send_progress needs the open socket: wait for it (bounded).
        for _ in range(200):
            if t._ws_connection is not None and not t._ws_connection.closed:
                break
            await asyncio.sleep(0.05)
        ok = await t.send_progress(ProgressUpdatePayload(event="progress_update", task_id="t-cmd", job_id="job-1", progress=0.5, message="half"))
        step("progress sent over the Rust listener's channel", ok is True, ok)
        command = await asyncio.wait_for(first, timeout=30)
        listener.cancel()
        step(
            "cancel_task pushed by the Rust listener arrives",
            command is not None and command.command == "cancel_task" and command.task_id == "t-cmd",
            command,
        )

        task = await t.poll_task(timeout=1)
        step("poll without a task gives None (204)", task is None, task)
    finally:
        await t.close()

    bad = HttpTransport(base_url=url, worker_id="py-worker", token="stolen")
    await bad.connect()
    try:
        await bad.register(registration())
        step("bad credential refused", False, "no error raised")
    except RxonAuthError as e:
        step("bad credential refused", True)
    finally:
        await bad.close()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=120))
    print(f"python worker: {len(failures)} failed", flush=True)
    sys.exit(1 if failures else 0)
