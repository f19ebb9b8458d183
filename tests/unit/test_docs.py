"""Meta-tests: the plugin API is documented, tested, and exported as intended."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import videoworker
from videoworker import hookspecs

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"

#: The plugin author's API (worker/__init__.py): change it on purpose, and here too.
PUBLIC_NAMES = {
    "ConfigError",
    "InvalidRequest",
    "JobEvent",
    "OutputFile",
    "StorageError",
    "StoredOutput",
    "WorkerError",
    "__version__",
    "hookimpl",
}


def hook_names() -> list[str]:
    return sorted(
        name
        for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(obj, f"{hookspecs.NAME}_spec")
    )


def test_hookspecs_are_found() -> None:
    names = hook_names()
    assert names, "no hookspecs found in worker/hookspecs.py"
    assert all(name.startswith("videoworker_") for name in names)
    assert set(names) <= set(hookspecs.__all__)


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented(hook: str) -> None:
    if not PLUGINS_DOC.is_file():
        pytest.skip("docs/plugins.md does not exist yet")
    assert f"{hook}(" in PLUGINS_DOC.read_text(encoding="utf-8"), f"docs/plugins.md does not document {hook}("


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_test(hook: str) -> None:
    pattern = re.compile(rf"^\s*(async\s+)?def\s+test_hook_{hook}\s*\(", re.MULTILINE)
    found = [p for p in TESTS.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert found, f"no test named test_hook_{hook} under tests/"


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_docstring(hook: str) -> None:
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"


def test_worker_all_is_the_intended_public_api() -> None:
    assert set(videoworker.__all__) == PUBLIC_NAMES
    assert len(videoworker.__all__) == len(PUBLIC_NAMES)
    for name in videoworker.__all__:
        assert hasattr(videoworker, name), name


def test_names_the_hookspecs_promise_are_exported() -> None:
    """Every ``worker.X`` the hook docs tell plugin authors to use is importable from ``worker``."""
    source = inspect.getsource(hookspecs)
    promised = set(re.findall(r"\bworker\.([A-Z]\w+)", source))
    assert promised, "hookspecs mention no worker.X names"
    assert promised <= set(videoworker.__all__)
