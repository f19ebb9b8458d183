"""Unit tests for worker.plugins (manager, Hooks façade), every hook, and the built-in ``local`` storage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import videoworker.default_plugins.capabilities
import videoworker.default_plugins.local
import videoworker.plugins.manager
from prometheus_client import REGISTRY
from videoworker import InvalidRequest, JobEvent, OutputFile, StoredOutput, hookimpl
from videoworker.config import Settings, load_settings
from videoworker.contract.request import VideoRequest, parse_request
from videoworker.default_plugins import local as local_plugin
from videoworker.errors import ConfigError, PluginError, StorageError
from videoworker.plugins.manager import BUILTIN_PLUGINS, ESSENTIAL_PLUGINS, Hooks, describe_plugins, make_plugin_manager
from videoworker.provider.catalogue import Catalogue
from videoworker.provider.models import VideoModel


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("VIDEOWORKER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data", openrouter_api_key="k")


def make_request(request_id: str = "req-1", **fields: Any) -> VideoRequest:
    body = {"id": request_id, "model": "acme/video-1", "prompt": "waves", **fields}
    return parse_request(
        json.dumps(body).encode(),
        message_id=None,
        content_type=None,
        max_message_bytes=1 << 20,
        max_prompt_chars=8000,
        max_metadata_bytes=16384,
    )


def make_output(tmp_path: Path, data: bytes, request_id: str = "req-1", index: int = 0) -> OutputFile:
    src = tmp_path / f"download-{request_id}-{index}-{len(data)}.part"
    src.write_bytes(data)
    return OutputFile(request_id, index, src, len(data), hashlib.sha256(data).hexdigest())


def event(status: str = "completed") -> JobEvent:
    return JobEvent(status=status, request_id="req-1", payload={"id": "req-1", "status": status})


def error_count(plugin: str) -> float:
    value = REGISTRY.get_sample_value(
        "videoworker_plugin_errors_total", {"plugin": plugin, "hook": "videoworker_job_event"}
    )
    return value or 0.0


# --- the manager ------------------------------------------------------------------------------


def test_builtins_are_loaded(settings: Settings) -> None:
    pm = make_plugin_manager(settings)
    assert set(BUILTIN_PLUGINS) == {"capabilities", "local"}
    assert pm.get_plugin("capabilities") is videoworker.default_plugins.capabilities
    assert pm.get_plugin("local") is videoworker.default_plugins.local


def test_disabling_local_works(tmp_path: Path) -> None:
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", disabled_plugins=["local"])
    pm = make_plugin_manager(s)
    assert pm.get_plugin("local") is None
    assert pm.get_plugin("capabilities") is videoworker.default_plugins.capabilities
    assert pm.hook.videoworker_store_output.get_hookimpls() == []
    assert [row["name"] for row in describe_plugins(pm)] == ["capabilities"]


def test_disabling_capabilities_is_refused(tmp_path: Path) -> None:
    assert "capabilities" in ESSENTIAL_PLUGINS
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", disabled_plugins=["capabilities"])
    with pytest.raises(ConfigError, match="capabilities"):
        make_plugin_manager(s)


def test_describe_plugins_lists_names_and_hooks(settings: Settings) -> None:
    rows = {row["name"]: row for row in describe_plugins(make_plugin_manager(settings))}
    assert set(rows) == {"capabilities", "local"}
    assert rows["capabilities"]["hooks"] == ["videoworker_validate_request"]
    assert rows["local"]["hooks"] == ["videoworker_store_output"]
    assert rows["local"]["module"] == "videoworker.default_plugins.local"
    assert all(row["builtin"] and row["distribution"] == "videoworker" and row["version"] for row in rows.values())


class Recorder:
    """A throwaway plugin implementing every hook, recording what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def videoworker_validate_request(self, request: VideoRequest, settings: Settings) -> None:
        self.calls.append(("validate", (request.id, settings)))

    @hookimpl
    async def videoworker_store_output(self, output: OutputFile) -> StoredOutput:
        await asyncio.sleep(0)
        self.calls.append(("store", output.index))
        return StoredOutput("recorder", f"mem://{output.request_id}/{output.index}")

    @hookimpl
    async def videoworker_job_event(self, event: JobEvent) -> None:
        await asyncio.sleep(0)
        self.calls.append(("event", event.status))

    @hookimpl
    async def videoworker_startup(self, settings: Settings) -> None:
        await asyncio.sleep(0)
        self.calls.append(("startup", settings))

    @hookimpl
    def videoworker_shutdown(self) -> None:
        self.calls.append(("shutdown", None))


def test_extra_plugin_is_registered(settings: Settings) -> None:
    rec = Recorder()
    pm = make_plugin_manager(settings, extra={"recorder": rec})
    assert pm.get_plugin("recorder") is rec
    row = next(r for r in describe_plugins(pm) if r["name"] == "recorder")
    assert row["builtin"] is False
    assert row["hooks"] == sorted(
        [
            "videoworker_validate_request",
            "videoworker_store_output",
            "videoworker_job_event",
            "videoworker_startup",
            "videoworker_shutdown",
        ]
    )


def test_unknown_videoworker_hook_raises_plugin_error(settings: Settings) -> None:
    class Typo:
        @hookimpl
        def videoworker_store_outputs(self) -> None: ...

    with pytest.raises(PluginError, match="videoworker_store_outputs"):
        make_plugin_manager(settings, extra={"typo": Typo()})


def test_hookimpl_with_unknown_argument_raises_plugin_error(settings: Settings) -> None:
    class BadArgs:
        @hookimpl
        def videoworker_job_event(self, event: JobEvent, colour: str) -> None: ...

    with pytest.raises(PluginError):
        make_plugin_manager(settings, extra={"bad": BadArgs()})


# --- one test per hook (test_docs.py checks that each hook has one) -------------------------------


def test_hook_videoworker_validate_request(settings: Settings) -> None:
    rec = Recorder()
    hooks = Hooks(make_plugin_manager(settings, extra={"recorder": rec}), settings)
    model = VideoModel(id="acme/video-1", supported_resolutions=["720p"])
    catalogue = Catalogue({model.id: model}, available=True)

    hooks.validate_request(make_request(resolution="720p"), catalogue)
    assert rec.calls == [("validate", ("req-1", settings))]

    class Refuser:
        @hookimpl
        def videoworker_validate_request(self, request: VideoRequest) -> None:
            raise InvalidRequest("no waves today", field="prompt")

    hooks = Hooks(make_plugin_manager(settings, extra={"refuser": Refuser()}), settings)
    with pytest.raises(InvalidRequest, match="no waves today"):
        hooks.validate_request(make_request(resolution="720p"), catalogue)
    # the essential capability check runs first: an unsupported value is model_unsupported
    with pytest.raises(InvalidRequest) as info:
        hooks.validate_request(make_request(resolution="9000p"), catalogue)
    assert info.value.code == "model_unsupported"


async def test_hook_videoworker_store_output(settings: Settings, tmp_path: Path) -> None:
    rec = Recorder()

    class Sync:
        @hookimpl
        def videoworker_store_output(self, output: OutputFile) -> StoredOutput:
            return StoredOutput("sync", f"sync://{output.index}")

    class Pass:
        @hookimpl
        async def videoworker_store_output(self) -> None:
            return None

    pm = make_plugin_manager(settings, extra={"recorder": rec, "sync": Sync(), "pass": Pass()})
    stored = await Hooks(pm, settings).store_output(make_request(), make_output(tmp_path, b"video"))
    assert all(isinstance(s, StoredOutput) for s in stored)  # coroutines were awaited, Nones dropped
    assert [s.backend for s in stored] == ["local", "recorder", "sync"]  # registration order: local first
    assert stored[1].location == "mem://req-1/0"
    assert rec.calls == [("store", 0)]
    assert (settings.data_dir / "videos" / "req-1" / "0.mp4").read_bytes() == b"video"


async def test_hook_videoworker_job_event(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(videoworker.plugins.manager, "EVENT_HOOK_TIMEOUT", 0.2)
    rec = Recorder()
    cancelled = asyncio.Event()

    class Failing:
        @hookimpl
        def videoworker_job_event(self) -> None:
            raise RuntimeError("slack is down")

    class Hanging:
        @hookimpl
        async def videoworker_job_event(self, event: JobEvent) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

    pm = make_plugin_manager(settings, extra={"failing": Failing(), "hanging": Hanging(), "recorder": rec})
    hooks = Hooks(pm, settings)
    before = error_count("failing"), error_count("hanging")
    async with asyncio.timeout(5):
        await hooks.job_event(event("completed"))
    assert rec.calls == [("event", "completed")]
    assert cancelled.is_set()
    assert hooks.plugin_errors == 2
    assert (error_count("failing"), error_count("hanging")) == (before[0] + 1, before[1] + 1)

    async with asyncio.timeout(5):
        await hooks.job_event(event("failed"))
    assert rec.calls[-1] == ("event", "failed")
    assert hooks.plugin_errors == 4


async def test_job_event_without_observers_is_a_no_op(settings: Settings) -> None:
    hooks = Hooks(make_plugin_manager(settings), settings)
    await hooks.job_event(event())
    assert hooks.plugin_errors == 0


async def test_hook_videoworker_startup(settings: Settings) -> None:
    rec = Recorder()
    calls: list[str] = []

    class SyncStart:
        @hookimpl
        def videoworker_startup(self) -> None:
            calls.append("sync")

    hooks = Hooks(make_plugin_manager(settings, extra={"recorder": rec, "sync": SyncStart()}), settings)
    await hooks.startup()
    assert ("startup", settings) in rec.calls
    assert calls == ["sync"]

    class Refuse:
        @hookimpl
        async def videoworker_startup(self) -> None:
            raise ConfigError("plugins.s3.bucket is required")

    hooks = Hooks(make_plugin_manager(settings, extra={"refuse": Refuse()}), settings)
    with pytest.raises(ConfigError, match=r"plugins\.s3\.bucket"):
        await hooks.startup()


async def test_hook_videoworker_shutdown(settings: Settings) -> None:
    rec = Recorder()
    closed: list[str] = []

    class Broken:
        @hookimpl
        async def videoworker_shutdown(self, settings: Settings) -> None:
            raise RuntimeError("already closed")

    class Async:
        @hookimpl
        async def videoworker_shutdown(self) -> None:
            await asyncio.sleep(0)
            closed.append("async")

    pm = make_plugin_manager(settings, extra={"recorder": rec, "broken": Broken(), "async": Async()})
    await Hooks(pm, settings).shutdown()  # a failing plugin does not stop the others
    assert ("shutdown", None) in rec.calls
    assert closed == ["async"]


# --- the built-in local storage -----------------------------------------------------------------


def uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file"
    return Path(unquote(parts.path))


async def test_local_storage_writes_the_file(settings: Settings, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    stored = await local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, data, index=1), settings)
    target = (settings.data_dir / "videos" / "req-1" / "1.mp4").resolve()
    assert stored == StoredOutput("local", target.as_uri())
    assert uri_path(stored.location) == target
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["1.mp4"]  # no temp file left behind


async def test_local_storage_rerun_overwrites(settings: Settings, tmp_path: Path) -> None:
    request = make_request()
    first = await local_plugin.videoworker_store_output(request, make_output(tmp_path, b"A" * 10), settings)
    again = await local_plugin.videoworker_store_output(request, make_output(tmp_path, b"A" * 10), settings)
    assert first == again
    other = await local_plugin.videoworker_store_output(request, make_output(tmp_path, b"B" * 20), settings)
    assert other == first
    target = uri_path(first.location)
    assert target.read_bytes() == b"B" * 20
    assert sorted(p.name for p in target.parent.iterdir()) == ["0.mp4"]


async def test_local_storage_never_exposes_a_partial_file(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = make_request()
    stored = await local_plugin.videoworker_store_output(request, make_output(tmp_path, b"old"), settings)

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk went away before the rename")

    monkeypatch.setattr(local_plugin.os, "replace", crash)
    with pytest.raises(OSError, match="rename"):
        await local_plugin.videoworker_store_output(request, make_output(tmp_path, b"new" * 1000), settings)
    assert uri_path(stored.location).read_bytes() == b"old"


async def test_local_storage_dir_override(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    s = load_settings(
        None, data_dir=tmp_path / "data", openrouter_api_key="k", plugins={"local": {"dir": str(elsewhere)}}
    )
    stored = await local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, b"x"), s)
    assert uri_path(stored.location) == (elsewhere / "req-1" / "0.mp4").resolve()
    assert (elsewhere / "req-1" / "0.mp4").read_bytes() == b"x"
    assert not (tmp_path / "data" / "videos").exists()


@pytest.mark.parametrize("request_id", ["..", "."])
async def test_local_storage_refuses_ids_that_escape_the_videos_dir(
    settings: Settings, tmp_path: Path, request_id: str
) -> None:
    """'.' and '..' fit the id pattern; the parser refuses them and storage refuses to write outside videos/."""
    with pytest.raises(StorageError):
        await local_plugin.videoworker_store_output(
            make_request("ok"), make_output(tmp_path, b"x", request_id=request_id), settings
        )
    assert not (settings.data_dir / "0.mp4").exists()
    assert not (settings.data_dir / "videos" / "0.mp4").exists()
