"""Hostile answers: the simulator playing a compromised or buggy OpenRouter, for the client's hardening tests.

Off by default. ``SimConfig(hostile=["poll_oversized", ...])`` (or ``POST /_sim/config``)
turns modes on; each bends one kind of answer and leaves every other answer as usual:

=====================  ======================================================================
mode                   what the simulator does
=====================  ======================================================================
``poll_oversized``     a completed job's poll answer carries 2 MiB of padding
``poll_deep``          a completed job's poll answer carries a value nested 100 000 deep
``models_deep``        ``GET /videos/models`` answers a data list nested 100 000 deep
``many_outputs``       a completed job lists 1 000 outputs
``cost_nan``           a completed job's ``usage.cost`` is ``NaN`` (bare, as Python's json writes it)
``cost_negative``      a completed job's ``usage.cost`` is ``-1``
``error_secrets``      a failed job's error and every injected HTTP error carry control
                       characters, a bearer token, an ``sk-`` key and a signed URL
``content_gzip``       videos are sent ``Content-Encoding: gzip``: 64 KiB that inflate to 64 MiB
``content_html``       videos are sent as ``Content-Type: text/html``
``content_drip``       videos are sent 64 bytes every 50 ms (a 20 kB video takes ~16 s)
=====================  ======================================================================
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
from typing import Any

from aiohttp import web

MODES = frozenset(
    {
        "poll_oversized",
        "poll_deep",
        "models_deep",
        "many_outputs",
        "cost_nan",
        "cost_negative",
        "error_secrets",
        "content_gzip",
        "content_html",
        "content_drip",
    }
)
#: The secrets and junk ``error_secrets`` puts into error text; tests check none of it comes out.
SECRET_TEXT = (
    "render failed\x1b[31m\x07 for Bearer sk-or-v1-0123456789abcdef0123456789abcdef"
    " at https://storage.example/v/1.mp4?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
    "\u202e txt.exe\n" + "x" * 2000
)
_DEEP = 100_000
_DRIP_BYTES = 64
_DRIP_GAP = 0.05


def check_modes(name: str, value: Any) -> list[str]:
    """The validated list of modes; ``ValueError`` names an unknown one."""
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
        raise ValueError(f"{name} must be a list of mode names")
    unknown = sorted(set(value) - MODES)
    if unknown:
        raise ValueError(f"{name}: unknown mode(s) {', '.join(unknown)}; known: {', '.join(sorted(MODES))}")
    return list(value)


def poll_answer(view: dict[str, Any], modes: list[str]) -> web.Response | None:
    """A bent poll answer for ``view`` (the normal one), or ``None`` to send the normal one."""
    if not modes:
        return None
    if view["status"] == "failed" and "error_secrets" in modes:
        view = {**view, "error": SECRET_TEXT}
    if view["status"] == "completed":
        view = _completed(view, modes)
    text = json.dumps(view)  # allow_nan: cost_nan writes a bare NaN, as a careless server would
    if view["status"] == "completed" and "poll_deep" in modes:
        text = text[:-1] + ', "deep": ' + "[" * _DEEP + "]" * _DEEP + "}"
    return web.Response(text=text, content_type="application/json")


def _completed(view: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    view = dict(view)
    if "many_outputs" in modes:
        first = view["unsigned_urls"][0].rsplit("=", 1)[0]
        view["unsigned_urls"] = [f"{first}={i}" for i in range(1000)]
    if "cost_nan" in modes:
        view["usage"] = {**view["usage"], "cost": float("nan")}
    if "cost_negative" in modes:
        view["usage"] = {**view["usage"], "cost": -1}
    if "poll_oversized" in modes:
        view["padding"] = "x" * (2 * 1024 * 1024)
    return view


def models_answer(modes: list[str]) -> web.Response | None:
    """A bent ``/videos/models`` answer, or ``None``."""
    if "models_deep" not in modes:
        return None
    return web.Response(text='{"data": ' + "[" * _DEEP + "]" * _DEEP + "}", content_type="application/json")


def error_message(message: str, modes: list[str]) -> str:
    """The message of an injected HTTP error."""
    return f"{message}: {SECRET_TEXT}" if "error_secrets" in modes else message


async def content_answer(request: web.Request, data: bytes, modes: list[str]) -> web.StreamResponse | None:
    """A bent video answer, or ``None`` to send the video as usual."""
    if "content_gzip" in modes:
        headers = {"Content-Type": "video/mp4", "Content-Encoding": "gzip"}
        return web.Response(body=_bomb(data[:32]), headers=headers)
    if "content_html" in modes:
        return web.Response(body=data, headers={"Content-Type": "text/html; charset=utf-8"})
    if "content_drip" in modes:
        return await _drip(request, data)
    return None


@functools.lru_cache(maxsize=8)
def _bomb(head: bytes) -> bytes:
    """A real MP4 head followed by 64 MiB of zeros, gzipped (about 64 KiB)."""
    return gzip.compress(head + bytes(64 * 1024 * 1024), compresslevel=9)


async def _drip(request: web.Request, data: bytes) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
    response.content_length = len(data)
    await response.prepare(request)
    try:
        for start in range(0, len(data), _DRIP_BYTES):
            await response.write(data[start : start + _DRIP_BYTES])
            await asyncio.sleep(_DRIP_GAP)
    except ConnectionError:
        pass  # the client gave up waiting, which is the point
    return response
