"""CPU per request: httpx's own transport against videoworker's aiohttp transport, same server, same run.

    python bench/transport.py [--requests 3000] [--concurrency 64]

A local aiohttp server (its own process, so its CPU is not counted) answers every GET
and POST with a small job document, as a poll or submit answer. Each side runs in its
own fresh process, alternating twice, and sends the same mix (half polls, half submits,
``--concurrency`` at once, 16 connections) through an ``httpx.AsyncClient``, reading
every body. Prints one JSON line: CPU ms per request for each run, and the ratio of
ours to httpx's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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
    transport = AiohttpTransport(16) if kind == "aiohttp" else None
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base, transport=transport, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                answer = await (client.get("/videos/x") if i % 2 else client.post("/videos", json={"model": "m"}))
                answer.json()

        await asyncio.gather(*(one(i) for i in range(200)))
        before = _cpu()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return (_cpu() - before) * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--side", choices=("httpx", "aiohttp"), help=argparse.SUPPRESS)
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
        runs: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
        for _ in range(2):
            for side in runs:
                command = [sys.executable, __file__, "--side", side, "--base", base]
                command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
                out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
                runs[side].append(round(float(out.stdout), 3))
    finally:
        server.terminate()
    ratio = statistics.median(runs["aiohttp"]) / statistics.median(runs["httpx"])
    print(json.dumps({"cpu_ms_per_request": runs, "ratio_aiohttp_to_httpx": round(ratio, 2), **vars(args)}))


if __name__ == "__main__":
    main()
