"""The Python reference HttpListener (rxon==1.0b3, aiohttp) holding parked long-polls:
the Python row of `rxon-bench idle`. Registration answers at once; a poll waits
(asyncio.sleep) for as long as the bench keeps it.

Prints "LISTENING <url>"; answers each "STATUS" line on stdin with
"STATUS <parked polls> <VmRSS KiB> <CPU seconds>"; exits when stdin closes.
"""

import asyncio
import os
import sys

from aiohttp import web
from rxon.transports.http_server import HttpListener

POLL_WAIT_S = 300
parked = 0


async def handler(message_type, payload, context):
    global parked
    if message_type == "poll":
        parked += 1
        try:
            await asyncio.sleep(POLL_WAIT_S)
        finally:
            parked -= 1
        return None
    if message_type == "register":
        return {"status": "registered"}
    return {"status": "ok"}


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds():
    t = os.times()
    return t.user + t.system


async def main():
    app = web.Application()
    await HttpListener(app).start(handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "STATUS":
            print(f"STATUS {parked} {rss_kib()} {cpu_seconds()}", flush=True)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
