"""Meta-tests of the layout: module sizes, no import cycles, a core free of I/O libraries, built-ins unnamed.

They read the source (``ast``), so they hold for code paths no other test imports.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker" / "videoworker"

#: Modules may grow to this many lines; past it, a module probably does more than one job.
MAX_LINES = 320


def modules() -> dict[str, Path]:
    """Dotted name → file of every module of the videoworker package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


KNOWN = set(modules())


def runtime_imports(path: Path) -> set[str]:
    """Modules imported when ``path`` is imported (``if TYPE_CHECKING:`` blocks and function bodies excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if isinstance(node, ast.Import | ast.ImportFrom) else []:
            if isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
            elif sub.module:
                # `from package import submodule` depends on the submodule; `from module import name` on the module
                for alias in sub.names:
                    child = f"{sub.module}.{alias.name}"
                    found.add(child if child in KNOWN else sub.module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in runtime_imports(path) if m in known and m != name} for name, path in known.items()}


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_too_big(name: str) -> None:
    """Small modules, one job each."""
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_there_is_no_import_cycle() -> None:
    """The module graph is acyclic, so every module can be read (and imported) on its own."""
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_core_imports_no_io_library() -> None:
    """Importing the whole core loads neither httpx nor aio-pika: it reaches them through protocols."""
    core = [name for name in modules() if name.startswith("videoworker.core")]
    probe = "print(sorted(m for m in ('httpx', 'aio_pika', 'aiormq') if m in sys.modules))"
    code = f"import sys\nimport {', '.join(core)}\n{probe}"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_only_the_amqp_package_imports_aio_pika() -> None:
    """aio-pika is the amqp package's business (and the test kit's, which plays the producer)."""
    users = {name for name, path in modules().items() if any(m.startswith("aio_pika") for m in runtime_imports(path))}
    assert users and all(name.startswith(("videoworker.amqp", "videoworker.testing")) for name in users), users


def test_the_core_never_names_a_builtin_plugin() -> None:
    """Built-ins are found through the entry-point group only, like third-party plugins."""
    for name, path in modules().items():
        if name.startswith("videoworker.default_plugins"):
            continue
        assert "default_plugins" not in path.read_text(encoding="utf-8"), name


def test_health_does_not_know_the_daemon() -> None:
    """The health server takes a readiness function, so of the package it imports only the server it runs on."""
    assert {m for m in graph()["videoworker.health"] if m.startswith("videoworker.")} == {"videoworker.serving"}


def test_the_product_wheel_carries_one_package_and_no_dev_tools(tmp_path: Path) -> None:
    """`pip install videoworker` installs only `videoworker`: no `worker`/`plugins` name, no simulator."""
    source = tmp_path / "source"  # setuptools writes build/ beside the sources: keep it out of the checkout
    shutil.copytree(ROOT / "worker", source / "worker", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)]
    subprocess.run(command, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("videoworker-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"videoworker"}
    assert not [n for n in names if "simulator" in n or "devtools" in n]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in requires if re.search(r"(?i)pillow|imageio", r)], requires
