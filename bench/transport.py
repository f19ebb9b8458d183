"""CPU per request: httpx's own client and transport, against videoworker's, same server, same run.

    python bench/transport.py [--requests 3000] [--concurrency 64]

A local aiohttp server (its own process, so its CPU is not counted) answers every GET
and POST with a small job document, as a poll or submit answer. Each side runs in its
own fresh process, alternating twice, and sends the same mix (half polls, half submits,
``--concurrency`` at once, 16 connections), reading every body:

- ``httpx``: an ``httpx.AsyncClient`` with httpx's own transport (the floor);
- ``aiohttp``: the same client through videoworker's aiohttp transport;
- ``sender``: videoworker's :class:`~videoworker.provider.sender.Sender` through that
  transport, as the provider client sends.

Prints one JSON line: CPU ms per request for each run, and the ratios of ours to httpx's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from videoworker.provider.sender import Sender  # noqa: E402
from videoworker.provider.transport import AiohttpTransport  # noqa: E402
from videoworker_devtools.ports import free_port, wait_until_answers  # noqa: E402

SERVER = """
from aiohttp import web
async def job(request):
    await request.read()
    return web.json_response({"id": "gen-vid-1-abcdefghij", "status": "in_progress", "unsigned_urls": None})
app = web.Application()
app.router.add_get("/videos/{id}", job)
app.router.add_post("/videos", job)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None, access_log=None)
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _side(kind: str, base: str, requests: int, concurrency: int) -> float:
    """CPU ms per request through one client (after a warm-up of 200)."""
    gate = asyncio.Semaphore(concurrency)
    if kind == "sender":
        sender = Sender(httpx.URL(base), "sk-bench", {}, httpx.Timeout(5.0), AiohttpTransport(16))
        body = json.dumps({"model": "m"}).encode()

        async def one(i: int) -> None:
            method, content = ("GET", None) if i % 2 else ("POST", body)
            async with gate, sender.stream(method, "/videos/x" if i % 2 else "/videos", content=content) as answer:
                json.loads(await answer.aread())

        try:
            return await _timed(one, requests)
        finally:
            await sender.aclose()
    transport = AiohttpTransport(16) if kind == "aiohttp" else None
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base, transport=transport, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                headers = {"Authorization": "Bearer sk-bench"}
                if i % 2:
                    answer = await client.get("/videos/x", headers=headers)
                else:
                    answer = await client.post("/videos", json={"model": "m"}, headers=headers)
                answer.json()

        return await _timed(one, requests)


async def _timed(one: Callable[[int], Awaitable[None]], requests: int) -> float:
    await asyncio.gather(*(one(i) for i in range(200)))
    before = _cpu()
    await asyncio.gather(*(one(i) for i in range(requests)))
    return (_cpu() - before) * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--side", choices=("httpx", "aiohttp", "sender"), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(asyncio.run(_side(args.side, args.base, args.requests, args.concurrency)))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{base}/videos/x", 15, "the local server")
        runs: dict[str, list[float]] = {"httpx": [], "aiohttp": [], "sender": []}
        for _ in range(2):
            for side in runs:
                command = [sys.executable, __file__, "--side", side, "--base", base]
                command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
                out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
                runs[side].append(round(float(out.stdout), 3))
    finally:
        server.terminate()
    floor = statistics.median(runs["httpx"])
    ratios = {f"ratio_{side}_to_httpx": round(statistics.median(runs[side]) / floor, 2) for side in runs}
    del ratios["ratio_httpx_to_httpx"]
    print(json.dumps({"cpu_ms_per_request": runs, **ratios, **vars(args)}))


if __name__ == "__main__":
    main()
