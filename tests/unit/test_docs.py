"""Meta-tests: the plugin API is documented, tested, and exported as intended."""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest

import videoworker
from videoworker import hookspecs

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"

#: The plugin author's API (worker/__init__.py): change it on purpose, and here too.
PUBLIC_NAMES = {
    "Catalogue",
    "ConfigError",
    "CostEstimate",
    "InvalidRequest",
    "JobEvent",
    "Notification",
    "NotifyError",
    "NotifyTarget",
    "OutputFile",
    "PluginError",
    "Settings",
    "StorageError",
    "StoredOutput",
    "VideoModel",
    "VideoRequest",
    "WorkerError",
    "__version__",
    "delivery_options",
    "hookimpl",
    "plugin_settings",
    "run_in_thread",
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
    """Every ``videoworker.X`` the hook docs tell plugin authors to use is importable from ``videoworker``."""
    source = inspect.getsource(hookspecs)
    promised = set(re.findall(r"\bvideoworker\.([A-Z]\w+)", source))
    assert promised, "hookspecs mention no videoworker.X names"
    assert promised <= set(videoworker.__all__)


def _classes_in(annotation: Any) -> set[type]:
    found: set[type] = set()
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and not typing.get_args(item):
            found.add(item)
        stack.extend(typing.get_args(item))
        origin = typing.get_origin(item)
        if isinstance(origin, type):
            found.add(origin)
    return found


@pytest.mark.parametrize("hook", hook_names())
def test_every_type_a_hookspec_mentions_is_exported(hook: str) -> None:
    """What a hook receives, returns or raises is a public name, so plugins never import internals."""
    namespace = {name: getattr(videoworker, name) for name in videoworker.__all__}
    globalns = {**vars(collections.abc), "BaseModel": pydantic.BaseModel, **namespace}
    hints = typing.get_type_hints(getattr(hookspecs, hook), globalns=globalns)
    ours = {c for hint in hints.values() for c in _classes_in(hint) if c.__module__.startswith("videoworker")}
    exported = {getattr(videoworker, name) for name in videoworker.__all__}
    missing = sorted(c.__name__ for c in ours - exported)
    assert not missing, f"{hook} mentions {missing}, which videoworker.__all__ does not export"
    raised = set(re.findall(r":raises videoworker\.(\w+)", getattr(hookspecs, hook).__doc__ or ""))
    assert raised <= set(videoworker.__all__)


def test_all_is_sorted() -> None:
    """``__all__`` is kept sorted, so additions are easy to review."""
    assert list(videoworker.__all__) == sorted(videoworker.__all__)


# --- the architecture document matches the code ----------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _section(text: str, start: str, end: str = "```") -> str:
    head = text.index(start) + len(start)
    return text[head : text.index(end, head)]


def test_state_diagram_matches_the_transition_table() -> None:
    """The Mermaid diagram draws exactly the legal moves, the start, and the terminal states."""
    from videoworker.core.states import TERMINAL, TRANSITIONS, JobState

    diagram = _section(ARCHITECTURE.read_text(encoding="utf-8"), "```mermaid\nstateDiagram-v2\n")
    edges = {tuple(part.strip() for part in line.split("-->")) for line in diagram.splitlines() if "-->" in line}
    assert {b for a, b in edges if a == "[*]"} == {JobState.RECEIVED.value}
    assert {a for a, b in edges if b == "[*]"} == {s.value for s in TERMINAL}
    drawn = {(a, b) for a, b in edges if "[*]" not in (a, b)}
    assert drawn == {(a.value, b.value) for a, moves in TRANSITIONS.items() for b in moves}


def test_state_table_matches_the_machine() -> None:
    """The table of states, steps, events and moves in docs/architecture.md is the code's table."""
    from videoworker.core.states import MACHINE, JobState

    table = _section(ARCHITECTURE.read_text(encoding="utf-8"), "| state | step that runs in it |", "\n\n")
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    documented = {
        JobState(cells[0].strip(" `")): (
            cells[1].strip() or None,
            cells[2].strip(" `") or None,
            {m.strip() for m in cells[3].split(",") if m.strip()},
        )
        for cells in rows
    }
    assert documented == {
        state: (spec.step.value if spec.step else None, spec.event, {m.value for m in spec.moves})
        for state, spec in MACHINE.items()
    }


# --- documents stand on their own ------------------------------------------------------------------

DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "devtools" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "plugins").glob("*/README.md")),
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_point_only_inside_the_repository(document: Path) -> None:
    """No document refers to a file outside the repository, and every relative link resolves."""
    text = document.read_text(encoding="utf-8")
    assert not re.search(r"\.\./shared|DESIGN\.md|research/", text)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (document.parent / target).exists(), f"{document.name} links to missing {target}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_teach_only_public_imports(document: Path) -> None:
    """Plugin examples import from ``videoworker``, never from the old ``worker`` package or internals."""
    text = document.read_text(encoding="utf-8")
    if document.name == "README.md" and document.parent == ROOT:
        text = text.split("## Migrating from `worker`")[0]  # the one place the old name may appear
    assert not re.search(r"\b(from|import) (worker|plugins)\b", text)


def test_the_settings_reference_in_operations_md_is_the_codes() -> None:
    """docs/operations.md embeds exactly what `videoworker config --reference` prints."""
    from videoworker.config_report import reference

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    embedded = text.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert embedded == reference(), "regenerate it with: videoworker config --reference"
