"""The simulator a bench run talks to, in its own process so it does not share the daemon's GIL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from videoworker_devtools.ports import free_port, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent


def start_simulator(job_seconds: tuple[float, float]) -> tuple[subprocess.Popen[bytes], str]:
    """``videoworker simulate`` on a free port; returns the process and the API base once it answers."""
    port = free_port()
    seconds = [str(s) for s in job_seconds]
    sim = subprocess.Popen(
        [sys.executable, "-m", "videoworker", "simulate", "--port", str(port), "--job-seconds", *seconds],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_until_answers(f"{base}/videos/models", 10, "the simulator")
    except TimeoutError:
        sim.terminate()
        raise
    return sim, base


def sim_admin(base: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The simulator's control API: ``stats`` (GET), ``reset`` or ``config`` (POST)."""
    url = f"{base.removesuffix('/api/v1')}/_sim/{what}"
    if what == "stats":
        return dict(httpx.get(url, timeout=300).json())
    httpx.post(url, json=body, timeout=30).raise_for_status()
    return {}
