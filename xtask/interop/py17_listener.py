"""The reference HttpListener of rxon==1.0b17 serving the Rust HttpTransport
(`rxon-http/examples/interop_worker_1b17.rs`), checking every message with the
reference's own tools: `verify_signature` on the JSON as received (as avtomatika
does), strict msgspec decoding (`from_dict`), the clock window, and exact contents.

Usage: python py17_listener.py <token> <orchestrator secret>
Prints `LISTENING <url>`; exits 0 once the conversation is complete and correct, 1
with the list of problems otherwise (or after 60 s).
"""

import asyncio
import sys
import time

from aiohttp import web
from rxon.models import Heartbeat, TaskPayload, TaskResult, WorkerEventPayload, WorkerRegistration
from rxon.security import sign_payload, verify_signature
from rxon.transports.http_server import HttpListener
from rxon.utils import from_dict, to_dict

TOKEN, SECRET = sys.argv[1:3]
WORKER = "rust17"
problems = []
seen = []
done = asyncio.Event()


def fail(msg):
    problems.append(msg)


def check_envelope(kind, payload, context, ignore=None):
    if context.get("protocol_version") != "1.0b17":
        fail(f"{kind}: X-RXON-Version {context.get('protocol_version')!r}")
    if context.get("worker_id_hint") != WORKER:
        fail(f"{kind}: X-Worker-ID / path names {context.get('worker_id_hint')!r}")
    if not isinstance(payload, dict):
        fail(f"{kind}: not an object: {payload!r}")
        return False
    ts = payload.get("timestamp")
    if not isinstance(ts, int) or abs(time.time() - ts) > 60:
        fail(f"{kind}: timestamp {ts!r}")
    sec = payload.get("security") or {}
    if sec.get("signer_id") != WORKER:
        fail(f"{kind}: signer_id {sec.get('signer_id')!r}")
    if not verify_signature(payload, sec.get("signature"), TOKEN, ignore_fields=ignore):
        fail(f"{kind}: the signature does not verify with the reference signer")
    if any(v is None for v in payload.values()):
        fail(f"{kind}: null members sent: {payload!r}")
    return True


def task(task_id, secret):
    t = to_dict(TaskPayload(job_id="j-1", task_id=task_id, type="echo", params={"x": 1.5}, tracing_context={},
                            priority=0, timestamp=int(time.time()), step=1))
    t["sig"] = sign_payload(t, secret, ignore_fields=["sig", "orchestrator_signature"])
    # avtomatika adds unsigned keys after signing.
    t["skill_version"] = "1"
    return t


queue = [task("t-signed", SECRET), task("t-forged", "not-the-secret")]
issued = iter(range(1, 100))


async def handler(kind, payload, context):
    seen.append(kind)
    if kind == "heartbeat" and payload is None:
        return None  # the probe of protocol "auto"
    if kind == "register":
        if check_envelope(kind, payload, context):
            reg = from_dict(WorkerRegistration, payload)
            skills = [s.name for s in reg.supported_skills or []]
            if skills != ["echo"] or reg.supported_skills[0].input_schema != {"type": "object"}:
                fail(f"register: supported_skills {reg.supported_skills!r}")
            props = (reg.resources.properties if reg.resources else None) or {}
            if props.get("cpu_cores") != 4 or props.get("max_concurrent_tasks") != 2:
                fail(f"register: resources {reg.resources!r}")
        return {"status": "registered", "version": "1.0b17"}
    if kind == "heartbeat":
        if check_envelope(kind, payload, context):
            hb = from_dict(Heartbeat, payload)
            if hb.status != "idle" or hb.usage is None or hb.usage.cpu_load_percent != 25:
                fail(f"heartbeat: {hb!r}")
            if "load" in payload or "hot_cache" in payload:
                fail(f"heartbeat: 1.0b3 keys sent: {payload!r}")
        return {"status": "ok", "cancel_task_ids": ["t-gone"], "require_full_sync": False}
    if kind == "poll":
        return queue.pop(0) if queue else None
    if kind == "event":
        if check_envelope(kind, payload, context, ignore=["bubbling_chain"]):
            ev = from_dict(WorkerEventPayload, payload)
            if ev.event_type != "progress" or ev.payload != {"progress": 0.5, "message": "half"} \
                    or ev.target_task_id != "t-signed" or ev.target_job_id != "j-1" or not ev.event_id:
                fail(f"event: {ev!r}")
        return {"status": "event_accepted"}
    if kind == "result":
        if check_envelope(kind, payload, context):
            if "status" in payload:
                fail(f"result: a success carries status {payload['status']!r} (the default is left out)")
            r = from_dict(TaskResult, payload)
            if r.task_id != "t-signed" or r.data != {"echo": "é", "n": 2} or r.costs != {"execution_time_seconds": 0.5}:
                fail(f"result: {r!r}")
            if r.task_id == "t-forged":
                fail("result: the forged task was run")
        return {"status": "accepted"}
    if kind == "sts_token":
        if context.get("worker_id_hint") != WORKER:
            fail(f"sts_token: X-Worker-ID {context.get('worker_id_hint')!r}")
        return {"access_token": f"py17-sts-{next(issued)}", "expires_in": 3600, "worker_id": WORKER,
                "refresh_token": "rt-1"}
    if kind == "sts_refresh":
        if payload != {"refresh_token": "rt-1"}:
            fail(f"sts_refresh: body {payload!r}")
        if context.get("token") != "py17-sts-1":
            fail(f"sts_refresh: sent with {context.get('token')!r}")
        return {"access_token": f"py17-sts-{next(issued)}", "expires_in": 3600, "worker_id": WORKER,
                "refresh_token": "rt-1"}
    if kind == "websocket_auth":
        if context.get("worker_id_hint") != WORKER or context.get("protocol_version") != "1.0b17":
            fail(f"websocket_auth: {context.get('worker_id_hint')!r} {context.get('protocol_version')!r}")
        return None
    if kind == "websocket":
        # The reference pushes commands as WorkerCommand JSON on /_worker/ws/{id}.
        await payload.send_json({"command": "cancel_task", "task_id": "t-ws", "job_id": "j-1"})
        async for msg in payload:
            if msg.type.name in ("CLOSE", "CLOSED", "ERROR"):
                break
        return None
    fail(f"unexpected message {kind}")
    raise web.HTTPNotFound(text=kind)


async def main():
    app = web.Application()
    listener = HttpListener(app)
    listener.setup_routes()
    await listener.start(handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(stdin_closed, timeout=60)
    except asyncio.TimeoutError:
        fail("the conversation did not end within 60 s")
    await runner.cleanup()
    want = ["register", "heartbeat", "poll", "event", "result", "poll", "sts_token", "sts_refresh", "heartbeat"]
    if "websocket" not in seen:
        fail("the worker never opened /_worker/ws/{id}")
    got = [k for k in seen if k not in ("websocket_auth", "websocket")]
    if got[:1] == ["heartbeat"]:
        got = got[1:]  # the probe
    if got != want:
        fail(f"messages {got}, expected {want}")
    if problems:
        print(f"py17_listener: FAILED, {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("CHECKED every message with the reference signer and decoders", flush=True)
    return 0


sys.exit(asyncio.run(main()))
