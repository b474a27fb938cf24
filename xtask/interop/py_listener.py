"""The Python reference HttpListener (rxon==1.0b3) with a small in-memory orchestrator.

Prints "LISTENING <url>" once serving. Two modes:

- default: the Rust HttpTransport (`rxon-http/examples/interop_worker.rs`) talks to it;
  serves until its stdin closes (at most 10 minutes);
- "echo": three `echo` tasks for the `worker` example (`rxon/examples/worker.rs`);
  exits once three results are in (at most 2 minutes).

Every registration, heartbeat, result and progress update is checked against exactly
what the Rust side sends (it omits unset optional fields, so a `null` or an extra key
is a difference; ints, floats and bools are told apart). Replies do not depend on the
checks, so that one run lists every problem. At the end it prints
"RESULTS <n> PROGRESS <m>"; it exits 1, listing the problems on stderr, when anything
was missing, unexpected or wrong, and 0 otherwise.
"""

import asyncio
import itertools
import json
import math
import sys
import threading

from aiohttp import WSMsgType, web
from rxon.constants import PROTOCOL_VERSION
from rxon.transports.http_server import HttpListener

VALID = {"good"}
STS_ONLY = {"bootstrap"}
issued = itertools.count(1)
tasks: "asyncio.Queue[dict]" = asyncio.Queue()
results: list = []
progress: list = []
registrations: list = []
heartbeats: list = []
probes: list = []
problems: list = []
done = asyncio.Event()
open_sockets: set = set()

# --- What `interop_worker.rs` sends -------------------------------------------------

RUST_WORKER = "rust-worker"
# `WorkerRegistration { worker_id, worker_type, supported_skills, ..Default::default() }`.
EXPECTED_REGISTRATION = {
    "worker_id": RUST_WORKER,
    "worker_type": "cpu",
    "supported_skills": ["echo"],
    "resources": {"max_concurrent_tasks": 0, "cpu_cores": 0},
    "installed_software": {},
    "installed_models": [],
    "capabilities": {"hostname": "", "ip_address": "", "cost_per_skill": {}},
}
EXPECTED_RESULTS = {
    # TaskResult::success(&task, "rust-worker", {"echo": "hello"})
    "t-ok": {
        "job_id": "job-1",
        "task_id": "t-ok",
        "worker_id": RUST_WORKER,
        "status": "success",
        "data": {"echo": "hello"},
    },
    # TaskResult::failure(&task, "rust-worker", TaskError::new(InvalidInput, "bad text"))
    "t-fail": {
        "job_id": "job-1",
        "task_id": "t-fail",
        "worker_id": RUST_WORKER,
        "status": "failure",
        "error": {"code": "INVALID_INPUT_ERROR", "message": "bad text"},
    },
    # TaskResult::cancelled(&task, "rust-worker"); answered "ignored" (deadline_exceeded)
    "t-late": {"job_id": "job-1", "task_id": "t-late", "worker_id": RUST_WORKER, "status": "cancelled"},
    # TaskResult::cancelled(&Default::default(), ..) with task_id "t-unknown"; answered "ignored"
    "t-unknown": {"job_id": "", "task_id": "t-unknown", "worker_id": RUST_WORKER, "status": "cancelled"},
}
# `Heartbeat { worker_id, status, ..Default::default() }`, "idle" then "flood" (answered 429).
EXPECTED_HEARTBEATS = [
    {
        "worker_id": RUST_WORKER,
        "status": status,
        "load": 0.0,
        "current_tasks": [],
        "supported_skills": [],
        "hot_cache": [],
    }
    for status in ("idle", "flood")
]
# `ProgressUpdatePayload::new("t-p", "job-1", 0.5)`: no message, so no "message" key.
EXPECTED_PROGRESS = [{"event": "progress_update", "task_id": "t-p", "job_id": "job-1", "progress": 0.5}]

# --- What the `worker` example sends in "echo" mode ---------------------------------

ECHO_WORKER = "example-worker"
ECHO_TASKS = [("e-ok", {"x": 1}), ("e-fail", {"fail": True}), ("e-sleep", {"sleep": 1})]
ECHO_CONCURRENCY = 4  # the example's default --concurrency
# The Worker fills in worker_id, supported_skills, max_concurrent_tasks and worker_type "rxon".
EXPECTED_ECHO_REGISTRATION = {
    "worker_id": ECHO_WORKER,
    "worker_type": "rxon",
    "supported_skills": ["echo"],
    "resources": {"max_concurrent_tasks": ECHO_CONCURRENCY, "cpu_cores": 0},
    "installed_software": {},
    "installed_models": [],
    "capabilities": {"hostname": "", "ip_address": "", "cost_per_skill": {}},
}
EXPECTED_ECHO_RESULTS = {
    "e-ok": {
        "job_id": "job-e",
        "task_id": "e-ok",
        "worker_id": ECHO_WORKER,
        "status": "success",
        "data": {"echo": {"x": 1}},
    },
    "e-fail": {
        "job_id": "job-e",
        "task_id": "e-fail",
        "worker_id": ECHO_WORKER,
        "status": "failure",
        "error": {"code": "INVALID_INPUT_ERROR", "message": "params.fail is true"},
    },
    "e-sleep": {
        "job_id": "job-e",
        "task_id": "e-sleep",
        "worker_id": ECHO_WORKER,
        "status": "success",
        "data": {"echo": {"sleep": 1}},
    },
}
# e-sleep (1 s in 0.5 s steps) reports after each step. Progress is advisory (the example
# may send it before its command channel is up), so these may be missing, never wrong.
ECHO_PROGRESS = [(0.5, "0.5s of 1s"), (1.0, "1.0s of 1s")]


# --- Checking ------------------------------------------------------------------------


def fail(message):
    if message not in problems:
        problems.append(message)


def differences(expected, actual, where):
    """How `actual` (decoded JSON) differs from `expected`; bool, int and float differ."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object {expected!r}, got {actual!r}"]
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing (expected {value!r})")
            else:
                out += differences(value, actual[key], f"{where}.{key}")
        for key, value in actual.items():
            if key not in expected:
                out.append(f"{where}.{key}: unexpected key (value {value!r})")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list {expected!r}, got {actual!r}"]
        if len(actual) != len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += differences(e, a, f"{where}[{i}]")
        return out
    if type(actual) is not type(expected) or actual != expected:
        return [
            f"{where}: expected {expected!r} ({type(expected).__name__}), "
            f"got {actual!r} ({type(actual).__name__})"
        ]
    return []


def expect(expected, actual, where):
    for difference in differences(expected, actual, where):
        fail(difference)


def is_probe(message_type, payload, context):
    """A transport whose protocol is "auto" asks first: one empty heartbeat carrying the
    newest version it speaks. This listener answers as 1.0b3 does (X-RXON-Version
    1.0b3, `null`), and the worker must then speak 1.0b3 throughout (every other
    message is checked by check_version). Counted per run: the `worker` example must
    ask exactly once."""
    if (
        message_type == "heartbeat"
        and payload is None
        and context.get("protocol_version") == "1.0b17"
    ):
        probes.append(context.get("worker_id"))
        return True
    return False


def check_version(message_type, context):
    version = context.get("protocol_version")
    if version != PROTOCOL_VERSION:
        fail(f"{message_type}: X-RXON-Version header is {version!r}, expected {PROTOCOL_VERSION!r}")


def check_poll(worker_id, payload):
    if payload != worker_id:
        fail(f"poll: worker id in the path is {payload!r}, expected {worker_id!r}")


def record_result(payload, expected):
    """Checks one result against `expected` (by task id); returns its task id or None."""
    results.append(payload)
    n = len(results)
    task_id = payload.get("task_id") if isinstance(payload, dict) else None
    if not isinstance(task_id, str):
        fail(f"result #{n} has no string task_id: {payload!r}")
        return None
    if task_id not in expected:
        fail(f"result #{n} is for unknown task {task_id!r} (expected one of {sorted(expected)}): {payload!r}")
    elif any(isinstance(r, dict) and r.get("task_id") == task_id for r in results[: n - 1]):
        fail(f"result #{n} is a duplicate result for task {task_id!r}: {payload!r}")
    else:
        expect(expected[task_id], payload, f"result {task_id}")
    return task_id


def decode_progress(msg):
    """Decodes one WebSocket frame from the worker, records it; the update or None."""
    if msg.type != WSMsgType.TEXT:
        fail(f"websocket: unexpected {msg.type.name} frame from the worker: {msg.data!r}")
        return None
    try:
        update = json.loads(msg.data)
    except ValueError as e:
        fail(f"websocket: a text frame is not JSON ({e}): {msg.data!r}")
        return None
    progress.append(update)
    n = len(progress)
    if not isinstance(update, dict):
        fail(f"progress #{n} is not an object: {update!r}")
        return None
    value = update.get("progress")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"progress #{n}: progress {value!r} is not a finite number: {update!r}")
    elif not 0.0 <= value <= 1.0:
        fail(f"progress #{n}: progress {value!r} is outside 0.0..=1.0: {update!r}")
    return update


def check_expected_progress():
    for i, update in enumerate(progress):
        if i >= len(EXPECTED_PROGRESS):
            fail(f"progress #{i + 1} is unexpected (only {len(EXPECTED_PROGRESS)} sent): {update!r}")
        else:
            expect(EXPECTED_PROGRESS[i], update, f"progress #{i + 1}")
    if len(progress) < len(EXPECTED_PROGRESS):
        fail(f"received {len(progress)} progress update(s), expected {len(EXPECTED_PROGRESS)}: {EXPECTED_PROGRESS!r}")


def check_echo_progress():
    seen = []
    for i, update in enumerate(progress):
        if not isinstance(update, dict):
            continue  # already reported
        value, message = update.get("progress"), update.get("message")
        matches = [p for p in ECHO_PROGRESS if p[0] == value and p[1] == message]
        if not matches:
            fail(f"progress #{i + 1}: (progress, message) is ({value!r}, {message!r}), expected one of {ECHO_PROGRESS}")
            continue
        expected = {
            "event": "progress_update",
            "task_id": "e-sleep",
            "job_id": "job-e",
            "progress": matches[0][0],
            "message": matches[0][1],
        }
        expect(expected, update, f"progress #{i + 1}")
        if matches[0] in seen:
            fail(f"progress #{i + 1} is a duplicate: {update!r}")
        elif seen and ECHO_PROGRESS.index(matches[0]) < ECHO_PROGRESS.index(seen[-1]):
            fail(f"progress #{i + 1} arrived out of order (after {seen[-1]}): {update!r}")
        seen.append(matches[0])


def check_echo_heartbeat(payload):
    """The example's heartbeats: derived from the tasks it runs at the time."""
    n = len(heartbeats)
    if not isinstance(payload, dict):
        fail(f"heartbeat #{n} is not an object: {payload!r}")
        return
    current = payload.get("current_tasks")
    known = {task_id for task_id, _ in ECHO_TASKS}
    if not isinstance(current, list) or not all(isinstance(t, str) and t in known for t in current):
        fail(f"heartbeat #{n}: current_tasks {current!r} is not a list of known task ids {sorted(known)}")
        return
    expected = {
        "worker_id": ECHO_WORKER,
        # "idle": a slot is free (what 1.0b17 orchestrators dispatch to); "full": none.
        "status": "full" if len(current) >= ECHO_CONCURRENCY else "idle",
        "load": len(current) / ECHO_CONCURRENCY,
        "current_tasks": sorted(set(current)),
        "supported_skills": ["echo"],
        "hot_cache": [],
    }
    expect(expected, payload, f"heartbeat #{n}")


def report(echo_mode):
    """Adds the end-of-run problems, prints the summary; the exit status."""
    expected_results = EXPECTED_ECHO_RESULTS if echo_mode else EXPECTED_RESULTS
    got = {r.get("task_id") for r in results if isinstance(r, dict)}
    missing = [task_id for task_id in expected_results if task_id not in got]
    if missing:
        fail(f"received {len(results)} result(s); none for task(s) {missing}")
    if len(registrations) != 1:
        fail(f"received {len(registrations)} accepted registration(s), expected exactly 1")
    if echo_mode:
        check_echo_progress()
    else:
        check_expected_progress()
        if len(heartbeats) != len(EXPECTED_HEARTBEATS):
            fail(f"received {len(heartbeats)} heartbeat(s), expected {len(EXPECTED_HEARTBEATS)} (idle, flood)")
    print(f"RESULTS {len(results)} PROGRESS {len(progress)}", flush=True)
    if problems:
        mode = "echo" if echo_mode else "interop"
        print(f"py_listener ({mode}): FAILED, {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        sys.stderr.flush()
        return 1
    print(f"PROBES {len(probes)}", flush=True)
    print("CHECKED all registrations, heartbeats, results and progress as expected", flush=True)
    return 0


# --- Handlers ------------------------------------------------------------------------


def check(context):
    token = context.get("token")
    if token not in VALID:
        raise web.HTTPUnauthorized(text="invalid worker token")


async def handler(message_type, payload, context):
    if is_probe(message_type, payload, context):
        return None
    check_version(message_type, context)
    if message_type == "sts_token":
        if context.get("token") not in VALID | STS_ONLY:
            raise web.HTTPUnauthorized(text="unknown credential")
        token = f"py-sts-{next(issued)}"
        VALID.add(token)
        return {"access_token": token, "expires_in": 60, "worker_id": RUST_WORKER}
    check(context)
    if message_type == "register":
        registrations.append(payload)
        expect(EXPECTED_REGISTRATION, payload, f"registration #{len(registrations)}")
        return {"status": "registered", "version": "1.0b3", "warning": None}
    if message_type == "poll":
        check_poll(RUST_WORKER, payload)
        try:
            return await asyncio.wait_for(tasks.get(), timeout=1.0)
        except asyncio.TimeoutError:
            return None
    if message_type == "result":
        task_id = record_result(payload, EXPECTED_RESULTS)
        if task_id == "t-late":
            return {"status": "ignored", "reason": "deadline_exceeded", "message": "too late"}
        if task_id == "t-unknown":
            return {"status": "ignored", "reason": "job_paused", "message": "done"}
        return {"status": "accepted", "task_id": task_id}
    if message_type == "websocket":
        ws = payload
        open_sockets.add(ws)
        try:
            await ws.send_json({"command": "cancel_task", "task_id": "t-9", "job_id": "job-1", "params": None})
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                update = decode_progress(msg)
                # Echo an acknowledgement as a command the worker can see.
                task_id = update.get("task_id") if isinstance(update, dict) else None
                await ws.send_json({"command": "cancel_task", "task_id": f"ack-{task_id}"})
        finally:
            open_sockets.discard(ws)
        return None
    if message_type == "heartbeat":
        heartbeats.append(payload)
        n = len(heartbeats)
        if n <= len(EXPECTED_HEARTBEATS):
            expect(EXPECTED_HEARTBEATS[n - 1], payload, f"heartbeat #{n}")
        else:
            fail(f"heartbeat #{n} is unexpected: {payload!r}")
        if isinstance(payload, dict) and payload.get("status") == "flood":
            raise web.HTTPTooManyRequests(text="Too Many Requests")
        return {"status": "ok", "cancel_task_ids": ["t-9"], "require_full_sync": False}
    raise web.HTTPNotFound(text=f"unsupported message {message_type}")


async def echo_handler(message_type, payload, context):
    """Mode "echo": three tasks for the `worker` example; exit once three results are in."""
    if is_probe(message_type, payload, context):
        return None
    check_version(message_type, context)
    if message_type == "register":
        registrations.append(payload)
        expect(EXPECTED_ECHO_REGISTRATION, payload, f"registration #{len(registrations)}")
        return {"status": "registered"}
    if message_type == "poll":
        check_poll(ECHO_WORKER, payload)
        try:
            return await asyncio.wait_for(tasks.get(), timeout=1.0)
        except asyncio.TimeoutError:
            return None
    if message_type == "result":
        record_result(payload, EXPECTED_ECHO_RESULTS)
        if isinstance(payload, dict):
            print(f"RESULT {payload.get('task_id')} {payload.get('status')} {payload.get('error') or payload.get('data')}", flush=True)
        if len(results) >= len(EXPECTED_ECHO_RESULTS):
            done.set()
        return {"status": "ok"}
    if message_type == "heartbeat":
        heartbeats.append(payload)
        check_echo_heartbeat(payload)
        return {"status": "ok"}
    if message_type == "sts_token":
        raise web.HTTPForbidden(text="no STS here")
    if message_type == "websocket":
        open_sockets.add(payload)
        try:
            async for msg in payload:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
                decode_progress(msg)
        finally:
            open_sockets.discard(payload)
        return None
    raise web.HTTPNotFound(text=message_type)


async def stdin_closed():
    """Waits until stdin reaches end of file (read in a daemon thread, never joined)."""
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def read():
        sys.stdin.read()
        try:
            loop.call_soon_threadsafe(closed.set)
        except RuntimeError:
            pass  # the loop has already finished

    threading.Thread(target=read, daemon=True).start()
    await closed.wait()


async def main():
    echo_mode = len(sys.argv) > 1 and sys.argv[1] == "echo"
    if echo_mode:
        for task_id, params in ECHO_TASKS:
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
    try:
        if echo_mode:
            await asyncio.wait_for(done.wait(), timeout=120)
        else:
            # Serve until the parent closes our stdin (or kills us), at most 10 minutes.
            await asyncio.wait_for(stdin_closed(), timeout=600)
    except asyncio.TimeoutError:
        fail("timed out before " + ("three results arrived (120 s)" if echo_mode else "stdin closed (600 s)"))
    finally:
        # Open command channels would hold up the shutdown.
        for ws in list(open_sockets):
            await ws.close()
        await runner.cleanup()
    return report(echo_mode)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
