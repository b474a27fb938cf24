"""A worker on the Python reference rxon==1.0b3, run beside a 1.0b17 worker against the
same `rxon orchestrator` (see sdk_tasks.py): it serves skill "upper" and answers
{"upper": params["text"].upper()} until the orchestrator goes away or 60 s pass.

Usage: python py_b3_worker.py <base_url> <worker_id> <token>
"""

import asyncio
import sys
import time

from rxon.models import InstalledModel, Resources, TaskResult, WorkerCapabilities, WorkerRegistration
from rxon.transports.http import HttpTransport


async def main(url, worker_id, token):
    t = HttpTransport(base_url=url, worker_id=worker_id, token=token)
    await t.connect()
    await t.register(
        WorkerRegistration(
            worker_id=worker_id,
            worker_type="cpu",
            supported_skills=["upper"],
            resources=Resources(max_concurrent_tasks=1, cpu_cores=1),
            installed_software={},
            installed_models=[InstalledModel(name="m", version="1")],
            capabilities=WorkerCapabilities(hostname="h", ip_address="127.0.0.1", cost_per_skill={}),
        )
    )
    print("REGISTERED", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            task = await t.poll_task(timeout=2)
        except Exception as e:  # the orchestrator stopped
            print(f"STOP {e!r}", flush=True)
            break
        if task is None:
            continue
        data = {"upper": str(task.params.get("text", "")).upper()}
        await t.send_result(
            TaskResult(job_id=task.job_id, task_id=task.task_id, worker_id=worker_id, status="success", data=data)
        )
        print(f"DID {task.task_id}", flush=True)
    await t.close()


asyncio.run(main(*sys.argv[1:4]))
