"""``videoworker demo``: the newcomer's first command runs the whole path, here with the push path on."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoworker_devtools.demo import run_demo


async def test_the_demo_with_callbacks_finds_each_job_through_its_callback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_demo(None, 2, tmp_path / "demo", with_callbacks=True) == 0
    out = capsys.readouterr().out
    assert "2/2 videos stored" in out
    assert out.count(": completed\n") == 2  # a progress line per job's end, even when its reply came first
    assert "push path: 2 signed callbacks delivered; 2 polls for 2 jobs" in out
    assert len(list((tmp_path / "demo" / "videos").glob("*/0.mp4"))) == 2
