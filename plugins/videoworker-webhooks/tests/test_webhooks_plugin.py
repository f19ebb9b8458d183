"""The distribution as videoworker sees it: its entry point, its hooks, and only public imports."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import videoworker_webhooks as webhooks

HOOKS = [
    "videoworker_delivery_model",
    "videoworker_notification_targets",
    "videoworker_notify",
    "videoworker_settings_model",
    "videoworker_shutdown",
    "videoworker_startup",
    "videoworker_validate_request",
]


def test_the_plugin_and_its_tests_import_only_public_videoworker_names() -> None:
    """Every module of the plugin and of its tests uses ``from videoworker import …`` and nothing deeper."""
    package = Path(webhooks.__file__).parent
    for path in [*package.glob("*.py"), *Path(__file__).parent.glob("*.py")]:
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        ours = {m for m in modules if m and m.split(".")[0] == "videoworker"}
        assert ours <= {"videoworker"}, (path.name, ours)


def test_videoworker_lists_the_installed_plugin() -> None:
    """`videoworker plugins --json` shows the plugin from its distribution, with its version and hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOWORKER_")}
    found = subprocess.run(
        [sys.executable, "-m", "videoworker", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    row = {row["name"]: row for row in json.loads(found.stdout)}["webhooks"]
    assert row["distribution"] == "videoworker-webhooks" and row["version"] == webhooks.__version__
    assert row["entry_point"] == "webhooks = videoworker_webhooks" and not row["builtin"]
    assert row["hooks"] == HOOKS


def test_the_declared_models_are_the_plugins_own() -> None:
    """The settings and delivery models are declared through the hooks, for the host to validate with."""
    assert webhooks.videoworker_settings_model() is webhooks.WebhooksSettings
    assert webhooks.videoworker_delivery_model() is webhooks.DeliveryOptions
    assert webhooks.DeliveryOptions.model_json_schema()["required"] == ["url"]
