"""Tests of the example plugin, as its own author would write them: its hooks, its settings, and its listing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import videoworker_blocklist as blocklist

from videoworker import ConfigError, InvalidRequest, Settings, VideoRequest


def settings(tmp_path: Path, **section: Any) -> Settings:
    return Settings(data_dir=tmp_path, openrouter_api_key="k", plugins={"blocklist": section})


def request(prompt: str) -> VideoRequest:
    return VideoRequest(id="r-1", model="acme/video-1", prompt=prompt)


@pytest.mark.parametrize(
    "prompt", ["Some GORE please", "gore", "a gore-fest", "a real   person walking", "Real\nPerson"]
)
async def test_a_blocked_term_is_refused(tmp_path: Path, prompt: str) -> None:
    """Terms match case-insensitively, as whole words, with any whitespace inside phrases."""
    s = settings(tmp_path, words=["gore", "real person"])
    with pytest.raises(InvalidRequest) as info:
        await blocklist.videoworker_validate_request(request(prompt), s)
    assert info.value.code == "invalid_request" and info.value.field == "prompt"
    assert "blocked term" in info.value.message


@pytest.mark.parametrize("prompt", ["gorey sunset", "a person, real calm", "ignore this"])
async def test_other_prompts_pass(tmp_path: Path, prompt: str) -> None:
    """Parts of words and scattered words do not match."""
    await blocklist.videoworker_validate_request(request(prompt), settings(tmp_path, words=["gore", "real person"]))


async def test_without_terms_nothing_is_refused(tmp_path: Path) -> None:
    """An empty (or absent) section refuses nothing."""
    await blocklist.videoworker_validate_request(request("anything at all"), settings(tmp_path))


async def test_terms_from_a_file_are_read_and_re_read_when_it_changes(tmp_path: Path) -> None:
    """The file adds terms; comments and blank lines are ignored; an edit takes effect without a restart."""
    listing = tmp_path / "blocked.txt"
    listing.write_text("# house rules\nwombat\n\n")
    s = settings(tmp_path, file=str(listing))
    with pytest.raises(InvalidRequest):
        await blocklist.videoworker_validate_request(request("a wombat"), s)
    await blocklist.videoworker_validate_request(request("a koala"), s)
    listing.write_text("koala  # now this too\n")
    os.utime(listing, ns=(1, 2_000_000_000_000_000_000))
    with pytest.raises(InvalidRequest):
        await blocklist.videoworker_validate_request(request("a koala"), s)


async def test_startup_refuses_a_wrong_setting_naming_it(tmp_path: Path) -> None:
    """An unknown key stops the start with a message naming [plugins.blocklist] and the key."""
    with pytest.raises(ConfigError, match=r"\[plugins\.blocklist\] colour"):
        await blocklist.videoworker_startup(settings(tmp_path, colour="red"))


async def test_startup_refuses_a_missing_file(tmp_path: Path) -> None:
    """A list file that cannot be read is a configuration error at start, not a crash per request."""
    with pytest.raises(ConfigError, match=r"\[plugins\.blocklist\] file: cannot read"):
        await blocklist.videoworker_startup(settings(tmp_path, file=str(tmp_path / "missing.txt")))


def test_the_plugin_imports_only_public_videoworker_names() -> None:
    """The plugin and its tests use the promised API: ``from videoworker import …`` and nothing deeper."""
    for path in (Path(blocklist.__file__), Path(__file__)):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m and m.split(".")[0] == "videoworker"}
        assert ours == {"videoworker"}, (path.name, ours)


def test_videoworker_lists_the_installed_plugin() -> None:
    """`videoworker plugins --json` shows the plugin, from its distribution, with its version and hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOWORKER_")}
    found = subprocess.run(
        [sys.executable, "-m", "videoworker", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    rows = {row["name"]: row for row in json.loads(found.stdout)}
    row = rows["blocklist"]
    assert row["distribution"] == "videoworker-blocklist" and row["version"] == blocklist.__version__
    assert row["hooks"] == ["videoworker_startup", "videoworker_validate_request"]
    assert row["entry_point"] == "blocklist = videoworker_blocklist" and not row["builtin"]
