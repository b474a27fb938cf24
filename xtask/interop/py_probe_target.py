"""The Python reference HttpListener (rxon==1.0b3, aiohttp) with token auth and no
tasks: what `rxon probe` checks a 1.0b3 orchestrator against.

Accepts the worker token given as argv[1]; anything else is refused with 401 (as
1.0b3 orchestrators do). Registrations and heartbeats are answered, polls find no
task, STS issues a token. Prints "LISTENING <url>"; exits when stdin closes.
"""

import asyncio
import sys

from aiohttp import web
from rxon.transports.http_server import HttpListener

TOKEN = sys.argv[1]


async def handler(message_type, payload, context):
    if context.get("token") != TOKEN:
        raise web.HTTPUnauthorized(text="unknown credential")
    if message_type == "register":
        return {"status": "registered"}
    if message_type == "poll":
        return None
    if message_type == "sts_token":
        return {"access_token": "py-sts-1", "expires_in": 60, "worker_id": "rxon-probe"}
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
