"""The Python reference HttpListener (rxon==1.0b3) with a small in-memory orchestrator.

Prints "LISTENING <url>" once serving; serves until killed. The Rust HttpTransport
(`rxon-http/examples/interop_worker.rs`) talks to it.
"""

import asyncio
import itertools
import sys

from aiohttp import WSMsgType, web
from rxon.transports.http_server import HttpListener

VALID = {"good"}
STS_ONLY = {"bootstrap"}
issued = itertools.count(1)
tasks: "asyncio.Queue[dict]" = asyncio.Queue()
results: list = []
progress: list = []


def check(context):
    token = context.get("token")
    if token not in VALID:
        raise web.HTTPUnauthorized(text="invalid worker token")


async def handler(message_type, payload, context):
    if message_type == "sts_token":
        if context.get("token") not in VALID | STS_ONLY:
            raise web.HTTPUnauthorized(text="unknown credential")
        token = f"py-sts-{next(issued)}"
        VALID.add(token)
        return {"access_token": token, "expires_in": 60, "worker_id": "rust-worker"}
    check(context)
    if message_type == "register":
        assert payload["worker_id"] == "rust-worker", payload
        return {"status": "registered", "version": "1.0b3", "warning": None}
    if message_type == "poll":
        try:
            return await asyncio.wait_for(tasks.get(), timeout=1.0)
        except asyncio.TimeoutError:
            return None
    if message_type == "result":
        if payload["task_id"] == "t-late":
            return {"status": "ignored", "reason": "deadline_exceeded", "message": "too late"}
        if payload["task_id"] == "t-unknown":
            return {"status": "ignored", "reason": "job_already_terminated", "message": "done"}
        results.append(payload)
        return {"status": "accepted", "task_id": payload["task_id"]}
    if message_type == "websocket":
        ws = payload
        await ws.send_json({"command": "cancel_task", "task_id": "t-9", "job_id": "job-1", "params": None})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                update = msg.json()
                progress.append(update)
                # Echo an acknowledgement as a command the worker can see.
                await ws.send_json({"command": "cancel_task", "task_id": "ack-" + update["task_id"]})
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        return None
    if message_type == "heartbeat":
        if payload and payload.get("status") == "flood":
            raise web.HTTPTooManyRequests(text="Too Many Requests")
        return {"status": "ok", "cancel_task_ids": ["t-9"], "require_full_sync": False}
    raise web.HTTPNotFound(text=f"unsupported message {message_type}")


async def echo_handler(message_type, payload, context):
    """Mode "echo": three tasks for the `worker` example; exit once all results are in."""
    if message_type == "register":
        assert "echo" in payload["supported_skills"], payload
        return {"status": "registered"}
    if message_type == "poll":
        try:
            return await asyncio.wait_for(tasks.get(), timeout=1.0)
        except asyncio.TimeoutError:
            return None
    if message_type == "result":
        results.append(payload)
        print(f"RESULT {payload['task_id']} {payload['status']} {payload.get('error') or payload.get('data')}", flush=True)
        if len(results) == 3:
            done.set()
        return {"status": "ok"}
    if message_type == "heartbeat":
        return {"status": "ok"}
    if message_type == "sts_token":
        raise web.HTTPForbidden(text="no STS here")
    if message_type == "websocket":
        async for _ in payload:
            pass
        return None
    raise web.HTTPNotFound(text=message_type)


done = asyncio.Event()


async def main():
    echo_mode = len(sys.argv) > 1 and sys.argv[1] == "echo"
    if echo_mode:
        for task_id, params in [("e-ok", {"x": 1}), ("e-fail", {"fail": True}), ("e-sleep", {"sleep": 1})]:
            await tasks.put({"job_id": "job-e", "task_id": task_id, "type": "echo", "params": params, "tracing_context": {}})
    for task_id, kind in [] if echo_mode else [("t-ok", "echo"), ("t-fail", "echo"), ("t-late", "echo")]:
        await tasks.put(
            {
                "job_id": "job-1",
                "task_id": task_id,
                "type": kind,
                "params": {"text": "hello", "n": 3, "nested": {"list": [1, 2.5, None]}},
                "tracing_context": {"traceparent": "00-abc-def-01"},
                "params_metadata": None,
                "priority": 5,
            }
        )
    app = web.Application()
    listener = HttpListener(app)
    await listener.start(echo_handler if echo_mode else handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    # Serve until the parent closes our stdin (or kills us), at most 10 minutes.
    loop = asyncio.get_running_loop()
    try:
        if echo_mode:
            await asyncio.wait_for(done.wait(), timeout=120)
        else:
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), timeout=600)
    finally:
        print(f"RESULTS {len(results)} PROGRESS {len(progress)}", flush=True)
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
