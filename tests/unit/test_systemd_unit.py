"""The shipped systemd unit: it verifies, it is hardened (offline score ≤ 2.0), and it agrees with the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from videoworker.config import load_settings
from videoworker.runtime import STOP_MARGIN

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "videoworker.service"

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    stub = tmp_path / "videoworker"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copy = tmp_path / "videoworker.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/videoworker", str(stub)))
    return copy


@needs_systemd
def test_the_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong with it."""
    done = subprocess.run(["systemd-analyze", "verify", str(runnable_copy(tmp_path))], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


@needs_systemd
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    """The offline exposure score is at most 2.0."""
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, done.stdout


def test_the_unit_says_what_the_daemon_does() -> None:
    """Notify with a watchdog, the hardening asked for, and a stop timeout above shutdown_grace + 2 s."""
    d = directives()
    assert d["Type"] == ["notify"] and d["WatchdogSec"] and d["NotifyAccess"] == ["main"]
    for key, value in {
        "UMask": "0077",
        "LimitNOFILE": "65536",
        "CapabilityBoundingSet": "",
        "ProtectProc": "invisible",
    }.items():
        assert d[key] == [value], key
    for key in ("ProtectClock", "ProtectKernelLogs", "ProtectHostname", "RestrictRealtime", "PrivateUsers"):
        assert d[key] == ["yes"], key
    assert d["ProcSubset"] == ["pid"] and "~@privileged @resources" in d["SystemCallFilter"]
    grace = load_settings(None).shutdown_grace
    assert float(d["TimeoutStopSec"][0]) > grace + STOP_MARGIN + 1
    names = {value.split(":")[0].lstrip("-") for value in d["LoadCredential"]}
    assert {"openrouter_api_key", "amqp_url", "ledger_url"} <= names


def test_the_documentation_link_points_at_a_document_of_this_repository() -> None:
    """Documentation= names an installed copy of a file that exists under docs/."""
    (link,) = directives()["Documentation"]
    assert link.startswith("file:///usr/share/doc/videoworker/")
    assert (ROOT / "docs" / link.rsplit("/", 1)[1]).is_file()
