"""The Python reference HttpListener (rxon==1.0b3) with an in-memory handler that always
has a task and accepts every result: the same work as `rxon-bench serve http`.

Prints "LISTENING <url>"; serves until stdin closes.
"""

import asyncio
import sys

from aiohttp import web
from rxon.transports.http_server import HttpListener

TASK = {
    "job_id": "job-bench",
    "task_id": "task-bench",
    "type": "echo",
    "params": {"n": 42, "text": "hello"},
    "tracing_context": {},
}


async def handler(message_type, payload, context):
    if message_type == "poll":
        return TASK
    if message_type == "result":
        return {"status": "ok"}
    if message_type == "register":
        return {"status": "registered"}
    return {"status": "ok"}


async def main():
    app = web.Application()
    await HttpListener(app).start(handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
