"""The example plugin distribution (plugins/videoworker-blocklist) as a deployment would run it.

It is installed by the test command like any third-party plugin, found through its
entry point, and called by a real daemon on real deliveries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, Observer
from videoworker_devtools.simulator import SimulatorThread


def _req(request_id: str, prompt: str) -> dict[str, Any]:
    return {"id": request_id, "model": "google/veo-3.1", "prompt": prompt, "duration": 4}


async def test_the_installed_example_plugin_is_called_by_the_daemon(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """A blocked prompt gets a failed event naming the term and is dead-lettered, unpaid; others complete."""
    d = await daemon(plugin_config={"blocklist": {"words": ["wombat"]}})
    assert d.pm.origins["blocklist"].distribution == "videoworker-blocklist"
    await observer.publish(_req("bl-bad", "a Wombat on a beach"), correlation_id="bl-bad")
    await observer.publish(_req("bl-ok", "a koala on a beach"), correlation_id="bl-ok")
    await observer.wait(lambda: observer.reply_for("bl-bad") and observer.reply_for("bl-ok"), what="both replies")
    refused = observer.reply_for("bl-bad")[0]
    assert refused["status"] == "failed" and refused["error"]["code"] == "invalid_request"
    assert "blocked term 'Wombat'" in refused["error"]["message"]
    assert observer.reply_for("bl-ok")[0]["status"] == "completed"
    await observer.wait(lambda: observer.dead, what="the dead letter")
    assert observer.dead[0].headers["x-videoworker-error-field"] == "prompt"
    assert sim.stats()["submits"] == 1


def test_a_broken_plugin_stops_the_cli_with_one_line(tmp_path: Path) -> None:
    """A plugin that fails to import: `videoworker plugins` exits 2 with one line naming it; no traceback."""
    info = tmp_path / "vw_oops-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vw-oops\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[videoworker]\noops = vw_oops_module\n")
    (tmp_path / "vw_oops_module.py").write_text(textwrap.dedent("import not_installed_dependency\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOWORKER_")}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "videoworker", "plugins"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'oops'" in lines[0] and "oops = vw_oops_module" in lines[0] and "vw-oops 0.3" in lines[0]
    assert "ModuleNotFoundError" in lines[0] and "Traceback" not in done.stderr
