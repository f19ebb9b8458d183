"""Unit tests for the plugin manager and the Hooks façade: loading, refusals, call order, async hooks, tracing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import structlog
from pluggy import HookCaller
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tests.helpers import make_output, make_request
from videoworker import (
    Catalogue,
    ConfigError,
    CostEstimate,
    InvalidRequest,
    JobEvent,
    Notification,
    NotifyError,
    NotifyTarget,
    OutputFile,
    PluginError,
    Settings,
    StorageError,
    StoredOutput,
    VideoModel,
    VideoRequest,
    hookimpl,
    plugin_settings,
)
from videoworker.config import load_settings
from videoworker.config_report import describe
from videoworker.default_plugins import capabilities, local
from videoworker.plugins.hooks import Hooks
from videoworker.plugins.manager import ESSENTIAL_PLUGINS, describe_plugins, make_plugin_manager
from videoworker.plugins.settings import secret_fields


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("VIDEOWORKER_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name, raising=False)


#: Plugins other distributions installed here: switched off, so these tests see only the built-ins and their own.
THIRD_PARTY = sorted(
    p.name for p in metadata.entry_points(group="videoworker") if p.dist is None or p.dist.name != "videoworker"
)


def only_builtins(tmp_path: Path, **overrides: Any) -> Settings:
    disabled = [*THIRD_PARTY, *overrides.pop("disabled_plugins", [])]
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "openrouter_api_key": "k", **overrides}
    return load_settings(None, disabled_plugins=disabled, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return only_builtins(tmp_path)


CATALOGUE = Catalogue({"acme/video-1": VideoModel(id="acme/video-1", supported_resolutions=["720p"])}, available=True)


def event(status: str = "completed") -> JobEvent:
    return JobEvent(status=status, request_id="req-1", payload={"id": "req-1", "status": status})


def error_count(plugin: str) -> float:
    value = REGISTRY.get_sample_value(
        "videoworker_plugin_errors_total", {"plugin": plugin, "hook": "videoworker_job_event"}
    )
    return value or 0.0


def install_fake_distribution(root: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """Put a distribution declaring ``entry_points`` (and its ``modules``) on a folder that is on sys.path."""
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where tests install throwaway distributions."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for module in [m for m in sys.modules if m.startswith("vwtest_")]:
        del sys.modules[module]


# --- the manager ------------------------------------------------------------------------------


def test_builtins_come_from_the_entry_point_group(settings: Settings) -> None:
    """The built-ins are registered through the videoworker entry points, like any other plugin."""
    pm = make_plugin_manager(settings)
    assert pm.get_plugin("capabilities") is capabilities
    assert pm.get_plugin("local") is local
    assert pm.origins["local"].entry_point == "local = videoworker.default_plugins.local"
    assert pm.origins["local"].builtin and pm.origins["capabilities"].builtin


def test_disabling_local_works(tmp_path: Path) -> None:
    """A disabled plugin is not even imported into the manager."""
    s = only_builtins(tmp_path, disabled_plugins=["local"])
    pm = make_plugin_manager(s)
    assert pm.get_plugin("local") is None
    assert pm.hook.videoworker_store_output.get_hookimpls() == []
    assert "local" not in [row["name"] for row in describe_plugins(pm)]


def test_disabling_capabilities_is_refused(tmp_path: Path) -> None:
    """The essential capability check cannot be turned off."""
    assert "capabilities" in ESSENTIAL_PLUGINS
    s = load_settings(None, data_dir=tmp_path, openrouter_api_key="k", disabled_plugins=["capabilities"])
    with pytest.raises(ConfigError, match="capabilities"):
        make_plugin_manager(s)


def test_describe_plugins_lists_versions_entry_points_and_hooks(settings: Settings) -> None:
    """Each row names the plugin, its distribution and version, its entry point and its hooks."""
    rows = {row["name"]: row for row in describe_plugins(make_plugin_manager(settings))}
    assert rows["capabilities"]["hooks"] == ["videoworker_validate_request"]
    assert rows["local"]["hooks"] == ["videoworker_store_output"]
    assert rows["local"]["module"] == "videoworker.default_plugins.local"
    for name in ("capabilities", "local"):
        assert rows[name]["builtin"] and rows[name]["distribution"] == "videoworker" and rows[name]["version"]


def test_extra_plugin_is_registered(settings: Settings) -> None:
    """Plugins passed in (tests, embedding) are registered after the installed ones and listed."""
    rec = Recording()
    pm = make_plugin_manager(settings, extra={"recorder": rec})
    assert pm.get_plugin("recorder") is rec
    row = next(r for r in describe_plugins(pm) if r["name"] == "recorder")
    assert row["builtin"] is False
    assert len(row["hooks"]) == 5


def test_unknown_videoworker_hook_raises_plugin_error(settings: Settings) -> None:
    """A typo in a hook name stops the start, naming the plugin and the hook."""

    class Typo:
        @hookimpl
        def videoworker_store_outputs(self) -> None: ...

    with pytest.raises(PluginError, match=r"typo.*videoworker_store_outputs"):
        make_plugin_manager(settings, extra={"typo": Typo()})


def test_hookimpl_with_unknown_argument_raises_plugin_error(settings: Settings) -> None:
    """An implementation asking for an argument the spec does not have is refused at registration."""

    class BadArgs:
        @hookimpl
        def videoworker_job_event(self, event: JobEvent, colour: str) -> None: ...

    with pytest.raises(PluginError, match=r"'bad'.*colour"):
        make_plugin_manager(settings, extra={"bad": BadArgs()})


@pytest.mark.parametrize("style", ["wrapper", "hookwrapper"])
def test_wrappers_are_refused(settings: Settings, style: str) -> None:
    """A wrapper could not see inside async implementations, so it is refused with a clear message."""

    class Wrapper:
        @hookimpl(**{style: True})
        def videoworker_store_output(self) -> Any:
            return (yield)

    with pytest.raises(PluginError, match=r"'wrapping'.*videoworker_store_output is a wrapper"):
        make_plugin_manager(settings, extra={"wrapping": Wrapper()})


def test_a_plugin_that_fails_to_import_stops_the_start_in_one_line(settings: Settings, site: Path) -> None:
    """The error names the plugin, its entry point and distribution, and the import error."""
    install_fake_distribution(site, "vw-broken", "[videoworker]\nbroken = vwtest_missing_module\n")
    with pytest.raises(PluginError) as info:
        make_plugin_manager(settings)
    message = str(info.value)
    assert "\n" not in message
    assert "'broken'" in message and "broken = vwtest_missing_module" in message and "vw-broken 1.2.3" in message
    assert "ModuleNotFoundError" in message


def test_a_plugin_that_raises_on_import_is_named(settings: Settings, site: Path) -> None:
    """An exception inside the plugin module is reported the same way, not as a traceback."""
    install_fake_distribution(
        site, "vw-crashy", "[videoworker]\ncrashy = vwtest_crashy\n", {"vwtest_crashy": "raise RuntimeError('no')"}
    )
    with pytest.raises(PluginError, match=r"'crashy'.*vwtest_crashy.*RuntimeError: no"):
        make_plugin_manager(settings)


def test_a_disabled_broken_plugin_is_not_loaded(tmp_path: Path, site: Path) -> None:
    """Disabling a plugin by name skips its import, so a broken one can be switched off."""
    install_fake_distribution(site, "vw-broken", "[videoworker]\nbroken = vwtest_missing_module\n")
    s = only_builtins(tmp_path, disabled_plugins=["broken"])
    assert make_plugin_manager(s).get_plugin("broken") is None


def test_a_third_party_plugin_cannot_take_a_builtin_name(settings: Settings, site: Path) -> None:
    """An entry point reusing ``local`` is refused instead of silently replacing (or losing to) the built-in."""
    install_fake_distribution(
        site, "vw-impostor", "[videoworker]\nlocal = vwtest_impostor\n", {"vwtest_impostor": "X = 1"}
    )
    with pytest.raises(PluginError, match=r"'local' is claimed twice.*vw-impostor"):
        make_plugin_manager(settings)


def test_an_installed_third_party_plugin_is_loaded_and_listed(settings: Settings, site: Path) -> None:
    """A distribution's entry point is imported, registered under its name, and described with its version."""
    source = """
        from videoworker import hookimpl

        @hookimpl
        def videoworker_job_event(event):
            pass
    """
    install_fake_distribution(site, "vw-good", "[videoworker]\ngood = vwtest_good\n", {"vwtest_good": source})
    rows = {r["name"]: r for r in describe_plugins(make_plugin_manager(settings))}
    assert rows["good"]["distribution"] == "vw-good" and rows["good"]["version"] == "1.2.3"
    assert rows["good"]["hooks"] == ["videoworker_job_event"] and not rows["good"]["builtin"]


# --- call order -------------------------------------------------------------------------------


def storer(name: str, calls: list[str], **marks: bool) -> object:
    class Store:
        @hookimpl(**marks)
        async def videoworker_store_output(self, output: OutputFile) -> StoredOutput:
            calls.append(name)
            return StoredOutput(name, f"{name}://{output.index}")

    return Store()


async def test_storage_runs_in_pluggy_order_and_the_first_result_is_primary(settings: Settings, tmp_path: Path) -> None:
    """tryfirst runs first and is the primary location; trylast runs last; the rest run newest first."""
    calls: list[str] = []
    extra = {
        "early": storer("early", calls, tryfirst=True),
        "late": storer("late", calls, trylast=True),
        "plain1": storer("plain1", calls),
        "plain2": storer("plain2", calls),
    }
    hooks = Hooks(make_plugin_manager(settings, extra=extra), settings)
    stored = await hooks.store_output(make_request(), make_output(tmp_path, b"video"))
    assert calls == ["early", "plain2", "plain1", "late"]
    pm_order = [i.plugin_name for i in reversed(hooks.pm.hook.videoworker_store_output.get_hookimpls())]
    assert pm_order == ["early", "plain2", "plain1", "local", "late"]
    # pluggy keeps trylast ones in registration order: local (installed) runs before late (passed in)
    assert [s.backend for s in stored] == ["early", "plain2", "plain1", "local", "late"]
    assert stored[0].location == "early://0"


async def test_storage_result_of_the_wrong_type_is_a_storage_error(settings: Settings, tmp_path: Path) -> None:
    """A storage plugin returning something other than StoredOutput fails the step with its name."""

    class Wrong:
        @hookimpl
        def videoworker_store_output(self) -> str:
            return "somewhere"

    hooks = Hooks(make_plugin_manager(settings, extra={"wrong": Wrong()}), settings)
    with pytest.raises(StorageError, match="'wrong' returned str"):
        await hooks.store_output(make_request(), make_output(tmp_path, b"v"))


async def test_validators_run_capabilities_first_then_stop_at_the_first_refusal(settings: Settings) -> None:
    """The essential check is tryfirst; after a refusal no later validator runs."""
    calls: list[str] = []

    class Refuser:
        @hookimpl
        def videoworker_validate_request(self, request: VideoRequest) -> None:
            calls.append("refuser")
            raise InvalidRequest("no waves today", field="prompt")

    class Later:
        @hookimpl(trylast=True)
        def videoworker_validate_request(self) -> None:
            calls.append("later")

    hooks = Hooks(make_plugin_manager(settings, extra={"refuser": Refuser(), "later": Later()}), settings)
    with pytest.raises(InvalidRequest) as info:
        await hooks.validate_request(make_request(resolution="9000p"), CATALOGUE)
    assert info.value.code == "model_unsupported" and calls == []
    with pytest.raises(InvalidRequest, match="no waves today"):
        await hooks.validate_request(make_request(resolution="720p"), CATALOGUE)
    assert calls == ["refuser"]


# --- async validation and tracing -------------------------------------------------------------


async def test_async_validators_are_awaited_and_can_refuse(settings: Settings) -> None:
    """An ``async def`` validator runs to completion, and its refusal refuses the request."""
    seen: list[str | None] = []

    class Budget:
        @hookimpl
        async def videoworker_validate_request(self, request: VideoRequest) -> None:
            await asyncio.sleep(0)
            seen.append(request.id)
            if request.duration and request.duration > 8:
                raise InvalidRequest("over budget", code="over_budget", field="duration")

    hooks = Hooks(make_plugin_manager(settings, extra={"spend_guard": Budget()}), settings)
    await hooks.validate_request(make_request("cheap", duration=4), CATALOGUE)
    with pytest.raises(InvalidRequest) as info:
        await hooks.validate_request(make_request("dear", duration=10), CATALOGUE)
    assert info.value.code == "over_budget"
    assert seen == ["cheap", "dear"]


async def test_tracing_logs_every_hook_call(tmp_path: Path) -> None:
    """With trace_plugins every call of every hook is logged with plugin, duration and outcome."""
    s = only_builtins(tmp_path, trace_plugins=True)
    hooks = Hooks(make_plugin_manager(s, extra={"recorder": Recording()}), s)
    with structlog.testing.capture_logs() as logs:
        await hooks.startup()
        await hooks.validate_request(make_request(resolution="720p"), CATALOGUE)
        await hooks.store_output(make_request(), make_output(tmp_path, b"v"))
        await hooks.job_event(event())
        await hooks.shutdown()
    traced = {(e["hook"], e["plugin"]) for e in logs if e["event"] == "hook call"}
    called = {"videoworker_startup", "videoworker_validate_request", "videoworker_store_output"}
    called |= {"videoworker_job_event", "videoworker_shutdown"}
    implemented = {
        (caller.name, impl.plugin_name)
        for caller in hooks.pm.hook.__dict__.values()
        if isinstance(caller, HookCaller) and caller.name in called
        for impl in caller.get_hookimpls()
    }
    assert traced == implemented  # every implementation of every hook called
    assert {("videoworker_job_event", "recorder"), ("videoworker_store_output", "local")} <= traced
    assert all(isinstance(e["ms"], float) and e["outcome"] == "ok" for e in logs if e["event"] == "hook call")


async def test_tracing_is_off_by_default(settings: Settings) -> None:
    """Without trace_plugins no hook call is logged."""
    hooks = Hooks(make_plugin_manager(settings), settings)
    with structlog.testing.capture_logs() as logs:
        await hooks.validate_request(make_request(resolution="720p"), CATALOGUE)
    assert not [e for e in logs if e["event"] == "hook call"]


# --- one test per hook (test_docs.py checks that each hook has one) -------------------------------


class Recording:
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


async def test_hook_videoworker_validate_request(settings: Settings) -> None:
    """Validators receive the request and settings; a refusal propagates as InvalidRequest."""
    rec = Recording()
    hooks = Hooks(make_plugin_manager(settings, extra={"recorder": rec}), settings)
    await hooks.validate_request(make_request(resolution="720p"), CATALOGUE)
    assert rec.calls == [("validate", ("req-1", settings))]
    with pytest.raises(InvalidRequest) as info:
        await hooks.validate_request(make_request(resolution="9000p"), CATALOGUE)
    assert info.value.code == "model_unsupported"


async def test_hook_videoworker_store_output(settings: Settings, tmp_path: Path) -> None:
    """Sync and async storage plugins both run; coroutines are awaited and None results dropped."""
    rec = Recording()

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
    assert [s.backend for s in stored] == ["sync", "recorder", "local"]
    assert stored[1].location == "mem://req-1/0"
    assert rec.calls == [("store", 0)]
    assert (settings.data_dir / "videos" / "req-1" / "0.mp4").read_bytes() == b"video"


async def test_hook_videoworker_job_event(tmp_path: Path) -> None:
    """Observers are isolated: a failing or hanging one is counted and the others still run."""
    s = only_builtins(tmp_path, observer_timeout=0.2)
    rec = Recording()
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

    pm = make_plugin_manager(s, extra={"failing": Failing(), "hanging": Hanging(), "recorder": rec})
    hooks = Hooks(pm, s)
    before = error_count("failing"), error_count("hanging")
    async with asyncio.timeout(5):
        await hooks.job_event(event("completed"))
    assert rec.calls == [("event", "completed")]
    assert cancelled.is_set()
    assert hooks.plugin_errors == 2
    assert (error_count("failing"), error_count("hanging")) == (before[0] + 1, before[1] + 1)


async def test_job_event_without_observers_is_a_no_op(settings: Settings) -> None:
    """No observer installed: nothing runs and nothing is counted."""
    hooks = Hooks(make_plugin_manager(settings), settings)
    await hooks.job_event(event())
    assert hooks.plugin_errors == 0


async def test_hook_videoworker_startup(settings: Settings) -> None:
    """Sync and async startups run; a ConfigError from one refuses the start."""
    rec = Recording()
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
    """A failing shutdown is logged and the others still close."""
    rec = Recording()
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
    await Hooks(pm, settings).shutdown()
    assert ("shutdown", None) in rec.calls
    assert closed == ["async"]


# --- declarations, notifications and cost ----------------------------------------------------


class ShopSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = "https://shop.example"
    token: SecretStr | None = None


class ShopDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str = Field("inbox", pattern=r"^[a-z]+$")


class Shop:
    """A plugin declaring both models, owing notifications and delivering them."""

    def __init__(self) -> None:
        self.delivered: list[Notification] = []

    @hookimpl
    def videoworker_settings_model(self) -> type[BaseModel]:
        return ShopSettings

    @hookimpl
    def videoworker_delivery_model(self) -> type[BaseModel]:
        return ShopDelivery

    @hookimpl
    def videoworker_notification_targets(self, event: JobEvent) -> list[NotifyTarget]:
        return [NotifyTarget("shop:main", {"folder": event.delivery.get("shop", {}).get("folder", "inbox")})]

    @hookimpl
    async def videoworker_notify(self, notification: Notification, settings: Settings) -> None:
        assert plugin_settings(settings, "shop", ShopSettings).url == "https://shop.example"
        self.delivered.append(notification)


def test_hook_videoworker_settings_model(tmp_path: Path) -> None:
    """A declared section is validated at start naming `[plugins.<name>] <key>`, and its secrets are redacted."""
    good = only_builtins(tmp_path, plugins={"shop": {"token": "tok-hunter2"}})
    hooks = Hooks(make_plugin_manager(good, extra={"shop": Shop()}), good)
    hooks.check_settings()
    assert plugin_settings(good, "shop", ShopSettings).token == SecretStr("tok-hunter2")
    shown = describe(good, {"shop": secret_fields(ShopSettings)})
    assert shown["plugins"]["shop"]["token"] == "***" and "hunter2" not in json.dumps(shown)
    bad = only_builtins(tmp_path, plugins={"shop": {"colour": "red"}})
    with pytest.raises(ConfigError, match=r"^\[plugins\.shop\] colour: Extra inputs are not permitted$"):
        Hooks(make_plugin_manager(bad, extra={"shop": Shop()}), bad).check_settings()


def test_hook_videoworker_delivery_model(settings: Settings) -> None:
    """Delivery options are checked against the plugin's model; unknown plugin names are refused."""
    hooks = Hooks(make_plugin_manager(settings, extra={"shop": Shop()}), settings)
    hooks.check_delivery(make_request(delivery={"shop": {"folder": "outbox"}, "local": {}}))
    with pytest.raises(InvalidRequest) as bad:
        hooks.check_delivery(make_request(delivery={"shop": {"folder": "../etc"}}))
    assert bad.value.field == "delivery.shop.folder" and "delivery.shop.folder" in bad.value.message
    with pytest.raises(InvalidRequest, match="no plugin named 'nosuch' is loaded"):
        hooks.check_delivery(make_request(delivery={"nosuch": {}}))


async def test_hook_videoworker_notification_targets(settings: Settings) -> None:
    """Each notifier names its targets; a notifier that crashes there is counted and the others still count."""

    class Broken:
        @hookimpl
        def videoworker_notification_targets(self) -> list[NotifyTarget]:
            raise RuntimeError("bug")

    hooks = Hooks(make_plugin_manager(settings, extra={"shop": Shop(), "broken": Broken()}), settings)
    found = await hooks.notification_targets(JobEvent("completed", "r-1", {}, {"shop": {"folder": "x"}}))
    assert found == [("shop", NotifyTarget("shop:main", {"folder": "x"}))]
    assert hooks.plugin_errors == 1


async def test_hook_videoworker_notify(settings: Settings) -> None:
    """A notification goes to its own plugin only; one for a plugin that is not loaded is a retryable NotifyError."""
    shop = Shop()
    hooks = Hooks(make_plugin_manager(settings, extra={"shop": shop}), settings)
    note = Notification("r-1:completed:shop:shop:main", event(), NotifyTarget("shop:main"), 1, 0.0)
    await hooks.notify("shop", note)
    assert shop.delivered == [note]
    with pytest.raises(NotifyError) as gone:
        await hooks.notify("elsewhere", note)
    assert gone.value.retryable


async def test_hook_videoworker_cost_estimate(settings: Settings) -> None:
    """The largest estimate and the smallest daily limit win; an unknown price from any plugin is unknown."""

    def guard(usd: float | None, limit: float | None) -> object:
        class Guard:
            @hookimpl
            def videoworker_cost_estimate(self) -> CostEstimate:
                return CostEstimate(usd, limit)

        return Guard()

    request = make_request()
    hooks = Hooks(make_plugin_manager(settings, extra={"a": guard(1.0, 50.0), "b": guard(2.5, 20.0)}), settings)
    assert await hooks.cost_estimate(request, CATALOGUE) == CostEstimate(2.5, 20.0)
    hooks = Hooks(make_plugin_manager(settings, extra={"a": guard(1.0, None), "b": guard(None, 20.0)}), settings)
    assert await hooks.cost_estimate(request, CATALOGUE) == CostEstimate(None, 20.0)
    assert await Hooks(make_plugin_manager(settings), settings).cost_estimate(request, CATALOGUE) is None
