"""An independent gRPC client (Python grpcio, stubs generated here from proto/) against
`rxon orchestrator`'s GrpcListener: the proto is a public contract.

Usage: python py_grpc_client.py <grpc host:port> <admin http url> <proto dir>
"""

import json
import os
import sys
import tempfile
import urllib.request

import grpc
from grpc_tools import protoc

target, admin, proto_dir = sys.argv[1], sys.argv[2], sys.argv[3]
out = tempfile.mkdtemp()
v1 = os.path.join(proto_dir, "rxon", "v1")
if protoc.main(["protoc", f"-I{v1}", f"--python_out={out}", f"--grpc_python_out={out}", os.path.join(v1, "rxon.proto")]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
import rxon_pb2 as pb  # noqa: E402
import rxon_pb2_grpc as pb_grpc  # noqa: E402

failures = []


def step(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        failures.append(name)


def admin_call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(admin + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


task_id = admin_call("POST", "/admin/tasks", {"type": "echo", "params": {"x": 1, "big": 9007199254740993}})["task_id"]
md = [("x-worker-token", "secret"), ("x-rxon-version", "1.0b3"), ("x-worker-id", "py-grpc")]
with grpc.insecure_channel(target) as channel:
    stub = pb_grpc.WorkerServiceStub(channel)
    reply = stub.Register(
        pb.WorkerRegistration(worker_id="py-grpc", worker_type="py", supported_skills=["echo"], resources=pb.Resources(max_concurrent_tasks=1, cpu_cores=1)),
        metadata=md, timeout=10,
    )
    step("Register", reply.status == "registered", reply)
    polled = stub.Poll(pb.PollRequest(timeout_ms=5000), metadata=md, timeout=15)
    params = json.loads(polled.task.params_json) if polled.HasField("task") else None
    step("Poll hands over the task", polled.HasField("task") and polled.task.task_id == task_id, polled)
    step("params arrive as exact JSON", params == {"x": 1, "big": 9007199254740993}, params)
    result = pb.TaskResult(job_id=polled.task.job_id, task_id=task_id, worker_id="py-grpc", status="success", data_json=json.dumps({"ok": True}).encode())
    outcome = stub.SendResult(result, metadata=md, timeout=10)
    step("SendResult accepted", outcome.status == "accepted", outcome)
    again = stub.SendResult(pb.TaskResult(job_id="j", task_id="ghost", worker_id="py-grpc", status="success"), metadata=md, timeout=10)
    step("SendResult for an unknown task is ignored", again.status == "ignored" and again.reason == "job_not_found", again)
    hb = stub.SendHeartbeat(pb.Heartbeat(worker_id="py-grpc", status="idle"), metadata=md, timeout=10)
    step("Heartbeat", list(hb.cancel_task_ids) == [] and not hb.require_full_sync, hb)
    empty = stub.Poll(pb.PollRequest(timeout_ms=200), metadata=md, timeout=10)
    step("Poll without a task", not empty.HasField("task"), empty)
    try:
        stub.Register(pb.WorkerRegistration(worker_id="py-grpc"), metadata=[("x-worker-token", "stolen")], timeout=10)
        step("a bad token is UNAUTHENTICATED", False, "no error")
    except grpc.RpcError as e:
        step("a bad token is UNAUTHENTICATED", e.code() == grpc.StatusCode.UNAUTHENTICATED, e.code())
state = admin_call("GET", f"/admin/tasks/{task_id}")
step("the orchestrator recorded the result", state["state"] == "success" and state["result"]["data"] == {"ok": True}, state)
print(f"python grpc client: {len(failures)} failed", flush=True)
sys.exit(1 if failures else 0)
