"""The `videoworker` command as a user runs it: submit --wait, models, plugins, schema, config, run refusals."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from tests.conftest import ROOT, Observer
from videoworker.config import Settings
from videoworker_devtools.simulator import SimulatorThread


async def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "videoworker",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return int(proc.returncode or 0), out.decode(), err.decode()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "VIDEOWORKER_AMQP_URL": settings.amqp_url.get_secret_value(),
        "VIDEOWORKER_REQUEST_QUEUE": settings.request_queue,
        "VIDEOWORKER_EVENTS_EXCHANGE": settings.events_exchange,
        "OPENROUTER_API_KEY": settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else "",
        "VIDEOWORKER_OPENROUTER_BASE_URL": settings.openrouter_base_url,
    }


async def test_submit_wait_shows_progress_and_result(daemon: Any, observer: Observer) -> None:
    """`submit --wait` publishes, prints progress on stderr and the final event as JSON on stdout."""
    d = await daemon()
    code, out, err = await _cli(
        "submit",
        "--model",
        "google/veo-3.1",
        "--prompt",
        "cli test",
        "--id",
        "cli-1",
        "--metadata",
        '{"k": 1}',
        "--wait",
        "--timeout",
        "60",
        env=_env(d.settings),
    )
    assert code == 0, err
    final = json.loads(out)
    assert final["id"] == "cli-1" and final["status"] == "completed" and final["metadata"] == {"k": 1}
    assert "cli-1: submitted" in err
    assert "cli-1: completed" in err  # the final line too, whether the reply or the event came first


async def test_submit_from_file_and_failed_exit_code(daemon: Any, observer: Observer, tmp_path: Any) -> None:
    """A JSON file request that is refused: exit 1 and the failed event on stdout."""
    d = await daemon()
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"id": "cli-2", "model": "google/veo-3.1", "prompt": "x", "resolution": "9000p"}))
    code, out, _ = await _cli("submit", "--file", str(path), "--wait", "--timeout", "60", env=_env(d.settings))
    assert code == 1
    assert json.loads(out)["error"]["code"] == "model_unsupported"


async def test_models_lists_the_simulator_catalogue(sim: SimulatorThread) -> None:
    code, out, err = await _cli(
        "models", "--json", env={"OPENROUTER_API_KEY": sim.api_key, "VIDEOWORKER_OPENROUTER_BASE_URL": sim.base_url}
    )
    assert code == 0, err
    assert "google/veo-3.1" in {m["id"] for m in json.loads(out)}


async def test_plugins_schema_and_config() -> None:
    code, out, _ = await _cli("plugins", "--json")
    assert code == 0 and {p["name"] for p in json.loads(out)} >= {"capabilities", "local"}
    code, out, _ = await _cli("schema")
    schemas = json.loads(out)
    assert code == 0 and "model" in schemas["request"]["properties"] and "status" in schemas["event"]["properties"]
    code, _, err = await _cli("config", env={"VIDEOWORKER_POLL_INTERVAL": "-1"})
    assert code == 2 and "poll_interval" in err and "VIDEOWORKER_POLL_INTERVAL" in err


async def test_run_refuses_to_start_without_a_key() -> None:
    env = {k: "" for k in ("OPENROUTER_API_KEY", "VIDEOWORKER_OPENROUTER_API_KEY")}
    code, _, err = await _cli("run", env={**env, "CREDENTIALS_DIRECTORY": "/nonexistent"})
    assert code == 2
    assert "OPENROUTER_API_KEY" in err


async def test_schema_asyncapi_prints_the_committed_document() -> None:
    """`videoworker schema asyncapi` prints exactly docs/asyncapi.json, so the two cannot drift."""
    code, out, _ = await _cli("schema", "asyncapi")
    assert code == 0 and out == (ROOT / "docs" / "asyncapi.json").read_text()
    assert json.loads(out)["asyncapi"] == "3.0.0"


async def test_dev_commands_explain_how_to_get_them_when_missing(tmp_path: Any) -> None:
    """Without the devtools distribution, `simulate` and `demo` say how to install it instead of failing oddly."""
    code = (
        "import sys\n"
        "from importlib import metadata\n"
        "real = metadata.entry_points\n"
        "metadata.entry_points = lambda **kw: [] if kw.get('group') == 'videoworker.commands' else real(**kw)\n"
        "from videoworker.cli import main\n"
        "sys.argv = ['videoworker', sys.argv[1]]\n"
        "main()\n"
    )
    for command in ("simulate", "demo"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, command, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2
        assert "videoworker-devtools" in err.decode() and "pip install -e ./devtools" in err.decode()
