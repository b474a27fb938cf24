#!/usr/bin/env python3
"""Reference worker built on the stock avtomatika-worker 1.0b20 SDK.

Skills:
  echo  -> reports progress 0.5 via send_progress (unless ECHO_PROGRESS=0), waits ECHO_DELAY
           seconds (default 0.2), then returns {"data": params} (success)
  fail  -> returns status "failure" with error {code: params.get("code", "PERMANENT_ERROR"), message}

Configuration is the SDK's own, via env (see avtomatika_worker/config.py):
  ORCHESTRATOR_URL          e.g. http://127.0.0.1:PORT
  WORKER_ID                 e.g. sdk-worker-1   ([A-Za-z0-9_-], max 128)
  WORKER_TOKEN              = orchestrator's GLOBAL_WORKER_TOKEN (X-Worker-Token and HMAC key)
  ORCHESTRATOR_SECRET_KEY   = orchestrator's ORCHESTRATOR_SECRET_KEY (verifies task "sig")
  WORKER_ENABLE_WEBSOCKETS  default false in config.py (README says True)
  WORKER_PORT               health server port; only used by `worker run` / run_with_health_check
"""

import asyncio
import os
import sys

from avtomatika_worker import Worker

worker = Worker()
ECHO_DELAY = float(os.environ.get("ECHO_DELAY", "0.2"))
ECHO_PROGRESS = os.environ.get("ECHO_PROGRESS", "1") != "0"


@worker.skill("echo")
async def echo(params: dict, send_progress, task_id: str, job_id: str):
    """Echo the task params back as the result data."""
    if ECHO_PROGRESS:
        try:
            await send_progress(task_id, job_id, 0.5, "halfway")
        except Exception as e:  # progress is best effort
            print(f"[sdk_worker] send_progress failed: {e!r}", file=sys.stderr, flush=True)
    if ECHO_DELAY > 0:
        await asyncio.sleep(ECHO_DELAY)
    return {"data": params}


@worker.skill("fail")
async def fail(params: dict):
    """Always fail with the requested error code."""
    return {
        "status": "failure",
        "error": {"code": params.get("code", "PERMANENT_ERROR"), "message": params.get("message", "requested failure")},
    }


if __name__ == "__main__":
    worker.run()
