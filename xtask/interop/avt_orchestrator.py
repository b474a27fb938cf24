#!/usr/bin/env python3
"""Self-contained interop harness around a *stock* avtomatika 1.0b30 orchestrator.

It starts OrchestratorEngine in-process (MemoryStorage, ENVIRONMENT=development, zero-trust on),
registers two blueprints, prints ``LISTENING http://127.0.0.1:<port>`` once the HTTP server answers,
optionally waits for worker(s) advertising the needed skills, then creates jobs through the public
client API, polls them and prints:

    JOB <job_id> <status> <json>      one per job (json: kind, expected, ok, result, error, progress...)
    DONE ok=<n> failed=<n>

Exit code: 0 = every job matched its expectation, 1 = some mismatch/timeout, 2 = setup error.

stdout carries ONLY the protocol lines above (plus optional "WORKERS ..." / "INFO ..." lines);
avtomatika's own logging (hard-wired to sys.stdout) is diverted to stderr.

Blueprints (client API, header X-Client-Token):
    POST /api/v1/jobs/echo  {"initial_data": {...}}  -> task type "echo", params = initial_data
    POST /api/v1/jobs/fail  {"initial_data": {...}}  -> task type "fail", params = initial_data
    GET  /api/v1/jobs/<job_id>                         -> status JSON
"""

import argparse
import asyncio
import json
import os
import sys
import time

# ---------------------------------------------------------------------------------------------
# stdout hygiene: keep a private handle on the real stdout for protocol lines and point fd 1
# (and therefore avtomatika's StreamHandler(sys.stdout)) at stderr.
# ---------------------------------------------------------------------------------------------
_PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)


def emit(line: str) -> None:
    _PROTO.write(line + "\n")
    _PROTO.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"[avt_orch] {msg}\n")
    sys.stderr.flush()


TERMINAL = {"finished", "failed", "error", "quarantined", "cancelled"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("AVT_PORT", "0")),
                   help="0 = pick a free port (default)")
    p.add_argument("--secret-key", default=os.environ.get("ORCHESTRATOR_SECRET_KEY", "interop-orch-secret"),
                   help="ORCHESTRATOR_SECRET_KEY (task 'sig' HMAC key)")
    p.add_argument("--worker-token", default=os.environ.get("GLOBAL_WORKER_TOKEN", "interop-worker-token"),
                   help="GLOBAL_WORKER_TOKEN (X-Worker-Token and HMAC key for worker messages)")
    p.add_argument("--client-token", default=os.environ.get("CLIENT_TOKEN", "interop-client-token"),
                   help="CLIENT_TOKEN (X-Client-Token)")
    p.add_argument("--clients-toml", action="store_true",
                   help="also write a clients.toml (token + monthly_attempts) and set CLIENTS_CONFIG_PATH; "
                        "not needed in 1.0b30: the global CLIENT_TOKEN gets a 1,000,000 quota automatically")
    p.add_argument("--echo", type=int, default=1, help="number of echo jobs (expect finished + echoed params)")
    p.add_argument("--fail", type=int, default=0, help="number of fail jobs (expect failed/quarantined)")
    p.add_argument("--rust-worker", action="store_true",
                   help="the worker is rxon's `worker` example: echo jobs sleep 1 s (so it reports progress) "
                        "and must return {'echo': params}; fail jobs go through the echo blueprint with "
                        "params.fail = true and must end 'failed' (INVALID_INPUT_ERROR)")
    p.add_argument("--fail-code", default="PERMANENT_ERROR",
                   help="error code the fail jobs ask the worker to return (put in initial_data['code'])")
    p.add_argument("--fail-statuses", default="failed,quarantined",
                   help="comma list of acceptable terminal statuses for fail jobs")
    p.add_argument("--expect-progress", action="store_true",
                   help="echo jobs must also show progress (worker called send_progress)")
    p.add_argument("--wait-workers", type=float, default=60.0,
                   help="seconds to wait for a live worker with each needed skill before creating jobs "
                        "(0 = don't wait; jobs created with no idle worker get quarantined quickly)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all jobs to be terminal")
    p.add_argument("--poll-interval", type=float, default=1.0,
                   help="per-job status poll interval; keep >= 0.6 s (client rate limit: 100 req/min per path)")
    p.add_argument("--linger", type=float, default=0.0, help="keep serving this many seconds after DONE")
    p.add_argument("--serve-only", action="store_true", help="no jobs: just serve until SIGTERM/SIGINT")
    p.add_argument("--no-rate-limit", action="store_true", help="RATE_LIMITING_ENABLED=false (not stock default)")
    p.add_argument("--no-access-log", action="store_true",
                   help="drop aiohttp's per-request access log lines (stock avtomatika logs every request at "
                        "INFO whatever LOG_LEVEL says: it sets the root logger to DEBUG)")
    p.add_argument("--compact-api", action="store_true",
                   help="leave DETAILED_API_RESPONSES=false (then error_message/progress are NOT in status JSON)")
    return p.parse_args()


def configure_env(a: argparse.Namespace, port: int) -> None:
    env = os.environ
    env["ENVIRONMENT"] = "development"
    env.pop("ENV", None)
    env.pop("REDIS_HOST", None)  # memory storage only
    env["ORCHESTRATOR_SECRET_KEY"] = a.secret_key
    env["GLOBAL_WORKER_TOKEN"] = a.worker_token
    env["CLIENT_TOKEN"] = a.client_token
    env["API_HOST"] = a.host
    env["API_PORT"] = str(port)
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("LOG_LEVEL", "INFO")
    if not a.compact_api:
        env["DETAILED_API_RESPONSES"] = "true"
    if a.no_rate_limit:
        env["RATE_LIMITING_ENABLED"] = "false"
    for k in ("HISTORY_DATABASE_URI", "S3_ENDPOINT_URL", "WORKERS_CONFIG_PATH", "BLUEPRINTS_DIR",
              "SCHEDULES_CONFIG_PATH", "TLS_ENABLED"):
        env.pop(k, None)
    if a.clients_toml:
        path = f"/tmp/avt_orch_clients_{os.getpid()}.toml"
        with open(path, "w") as f:
            f.write(f'[interop]\ntoken = "{a.client_token}"\nplan = "test"\nmonthly_attempts = 1000000\n')
        env["CLIENTS_CONFIG_PATH"] = path
    else:
        env.pop("CLIENTS_CONFIG_PATH", None)


# ---------------------------------------------------------------------------------------------
# Blueprints. NB: avtomatika validates blueprints by AST-parsing handler source: `transitions`
# must be a literal dict with constant values, and every state must be reachable.
# A terminal state named exactly "finished" gives job status "finished"; any other end state -> "failed".
# Worker failures (status "failure") never use `transitions`: avtomatika maps error.code directly
# (PERMANENT/SECURITY/DEPENDENCY/CONTRACT_VIOLATION -> quarantined, INVALID_INPUT/INTEGRITY_MISMATCH ->
# failed, anything else -> re-dispatched up to JOB_MAX_RETRIES, then quarantined).
# ---------------------------------------------------------------------------------------------
def make_blueprint(name: str, endpoint: str, task_type: str):
    from avtomatika import Blueprint

    bp = Blueprint(name=name, api_version="v1", api_endpoint=endpoint)

    @bp.handler(is_start=True)
    async def start(initial_data, actions):
        actions.dispatch_task(
            task_type=task_type,
            params=dict(initial_data or {}),
            transitions={"success": "finished", "failure": "failed"},
        )

    @bp.handler(is_end=True)
    async def finished(state_history):
        # The worker's `data` dict is merged into state_history. avtomatika then sets
        # job["result"] = state_history["finished"] if present, else the VALUE of the last key,
        # so store the whole worker data under the end state's name.
        snapshot = {k: v for k, v in state_history.items() if k != "finished"}
        state_history["finished"] = snapshot

    @bp.handler(is_end=True)
    async def failed(state_history):
        pass

    return bp


# ---------------------------------------------------------------------------------------------
async def http_json(session, method: str, url: str, **kw):
    async with session.request(method, url, **kw) as r:
        text = await r.text()
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return r.status, body


def echo_params(i: int) -> dict:
    return {"msg": f"hello-{i}", "i": i, "tags": ["a", "b"], "nested": {"x": 1.5, "u": "é", "ok": True}}


async def wait_workers(session, base: str, headers: dict, skills: set, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            st, body = await http_json(session, "GET", f"{base}/api/v1/workers", headers=headers)
        except Exception as e:  # noqa: BLE001
            st, body = 0, str(e)
        if st == 200 and isinstance(body, list):
            have = {}
            for w in body:
                if w.get("status", "idle") != "idle":
                    continue
                for s in w.get("supported_skills") or []:
                    name = s.get("name") if isinstance(s, dict) else s
                    have.setdefault(name, []).append(w.get("worker_id"))
            summary = {k: have.get(k, []) for k in sorted(skills)}
            if summary != last:
                log(f"workers per skill: {summary}")
                last = summary
            if all(have.get(k) for k in skills):
                emit("WORKERS " + json.dumps(summary, sort_keys=True))
                return True
        elif st == 429:
            await asyncio.sleep(2.0)
        await asyncio.sleep(1.0)
    return False


async def run_jobs(a: argparse.Namespace, base: str) -> int:
    import aiohttp

    headers = {"X-Client-Token": a.client_token}
    fail_ok = {s.strip() for s in a.fail_statuses.split(",") if s.strip()}
    if a.rust_worker:
        fail_ok = {"failed"}  # INVALID_INPUT_ERROR fails the job; it is not quarantined
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        skills = set()
        if a.echo or (a.fail and a.rust_worker):
            skills.add("echo")
        if a.fail and not a.rust_worker:
            skills.add("fail")
        if a.wait_workers > 0 and skills:
            if not await wait_workers(session, base, headers, skills, a.wait_workers):
                emit(f"INFO no idle worker with skills {sorted(skills)} after {a.wait_workers:.0f}s")
                emit(f"DONE ok=0 failed={a.echo + a.fail}")
                return 1

        jobs = []  # dicts: id, kind, expected params
        specs = [("echo", echo_params(i)) for i in range(a.echo)]
        if a.rust_worker:
            for _, params in specs:
                params["sleep"] = 1.0
            specs += [("fail", {"fail": True, "i": i}) for i in range(a.fail)]
        else:
            specs += [("fail", {"code": a.fail_code, "message": f"requested failure {i}", "i": i})
                      for i in range(a.fail)]
        for kind, params in specs:
            route = "echo" if a.rust_worker else kind
            st, body = await http_json(session, "POST", f"{base}/api/v1/jobs/{route}", headers=headers,
                                       json={"initial_data": params})
            if st != 202 or not isinstance(body, dict) or "job_id" not in body:
                emit(f"JOB - create_error {json.dumps({'kind': kind, 'http': st, 'body': body})}")
                jobs.append({"id": None, "kind": kind, "params": params, "status": "create_error", "state": {}})
                continue
            jobs.append({"id": body["job_id"], "kind": kind, "params": params, "status": "pending", "state": {},
                         "max_progress": None})
            log(f"created {kind} job {body['job_id']}")

        deadline = time.monotonic() + a.timeout
        pending = [j for j in jobs if j["id"]]
        while pending and time.monotonic() < deadline:
            for j in list(pending):
                try:
                    st, body = await http_json(session, "GET", f"{base}/api/v1/jobs/{j['id']}", headers=headers)
                except Exception as e:  # noqa: BLE001
                    log(f"poll error {j['id']}: {e}")
                    continue
                if st == 200 and isinstance(body, dict):
                    j["state"] = body
                    j["status"] = body.get("status", "unknown")
                    if body.get("progress") is not None:
                        j["max_progress"] = body.get("progress")
                    if j["status"] in TERMINAL:
                        pending.remove(j)
                elif st == 429:
                    log("client API rate-limited (429); slowing down")
                    await asyncio.sleep(2.0)
                else:
                    log(f"poll {j['id']}: HTTP {st} {body}")
            if pending:
                await asyncio.sleep(a.poll_interval)

        ok = bad = 0
        for j in jobs:
            s = j["state"]
            result = s.get("result")
            err = s.get("error_message")
            if j["kind"] == "echo":
                want = {"echo": j["params"]} if a.rust_worker else j["params"]
                good = j["status"] == "finished" and result == want
                if a.expect_progress:
                    good = good and s.get("progress") is not None
                expected = "finished"
            else:
                good = j["status"] in fail_ok
                expected = "|".join(sorted(fail_ok))
            info = {"kind": j["kind"], "expected": expected, "ok": good, "result": result, "error": err}
            for k in ("progress", "progress_message", "current_state", "assigned_worker_id", "current_task_id"):
                if s.get(k) is not None:
                    info[k] = s.get(k)
            if j["kind"] == "echo" and not good:
                info["expected_result"] = j["params"]
            if j["id"] and j["status"] not in TERMINAL:
                info["timeout"] = True
            emit(f"JOB {j['id'] or '-'} {j['status']} {json.dumps(info, ensure_ascii=False, sort_keys=True)}")
            if good:
                ok += 1
            else:
                bad += 1
        emit(f"DONE ok={ok} failed={bad}")
        return 0 if bad == 0 else 1


async def amain(a: argparse.Namespace) -> int:
    configure_env(a, a.port)

    import aiohttp
    from avtomatika import OrchestratorEngine
    from avtomatika.config import Config
    from avtomatika.storage import MemoryStorage

    config = Config()
    engine = OrchestratorEngine(MemoryStorage(), config)
    engine.register_blueprint(make_blueprint("echo_flow", "/jobs/echo", "echo"))
    engine.register_blueprint(make_blueprint("fail_flow", "/jobs/fail", "fail"))

    await engine.start()
    if a.no_access_log:
        import logging

        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    rc = 2
    try:
        port = a.port
        if port == 0:
            addrs = engine.runner.addresses
            port = addrs[0][1]
        base = f"http://{a.host}:{port}"
        # readiness: the server must answer before we announce it
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            for _ in range(50):
                try:
                    st, _b = await http_json(s, "GET", f"{base}/_public/status")
                    if st == 200:
                        break
                except Exception:  # noqa: BLE001
                    pass
                await asyncio.sleep(0.1)
            else:
                emit("INFO server did not answer /_public/status")
                return 2
        emit(f"LISTENING {base}")
        log(f"secret_key={a.secret_key!r} worker_token={a.worker_token!r} client_token={a.client_token!r}")

        if a.serve_only:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            return 0

        rc = await run_jobs(a, base)
        if a.linger > 0:
            await asyncio.sleep(a.linger)
        return rc
    finally:
        try:
            await asyncio.wait_for(engine.stop(), timeout=3)
        except Exception as e:  # noqa: BLE001
            log(f"engine.stop: {e!r}")
        cp = os.environ.get("CLIENTS_CONFIG_PATH", "")
        if a.clients_toml and cp.startswith("/tmp/avt_orch_clients_"):
            try:
                os.unlink(cp)
            except OSError:
                pass


def main() -> None:
    a = parse_args()
    try:
        rc = asyncio.run(amain(a))
    except KeyboardInterrupt:
        rc = 130
    except Exception as e:  # noqa: BLE001
        emit(f"INFO setup error: {e!r}")
        rc = 2
    _PROTO.flush()
    # background tasks (executor, watcher, log QueueListener thread) must not keep us alive
    os._exit(rc)


if __name__ == "__main__":
    main()
