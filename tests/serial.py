"""Two-phase test runs: the tests marked ``serial`` apart from all the others.

A test is marked ``serial`` when it disturbs what every other test shares: it stops the
RabbitMQ node (``rabbitmqctl stop_app``), restarts a service, or asserts on the broker's
global state. Such a test must not overlap any other, so ``make test`` runs the suite
twice over, as two pytest invocations of this plugin::

    python -m pytest -p tests.serial --serial=skip -n 4   # everything else, in parallel workers
    python -m pytest -p tests.serial --serial=only        # then the serial tests, one at a time

Loaded with ``-p`` (not from a conftest) so that ``--serial`` is known whatever paths or
``-m``/``-k`` a run is given; the phase is applied after those, so ``-m 'not slow'``
narrows both phases. A phase left with nothing to run (its tests all belong to the other
phase) passes; a run whose own selection matches nothing still ends with pytest's exit
code 5. Without ``--serial`` every test runs, as in a plain ``pytest``.
"""

from __future__ import annotations

from typing import Any

import pytest

MARK = "serial"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("all", "skip", "only"),
        default="all",
        help=f"tests marked {MARK!r}: run them with the others (all), leave them out (skip), or run only them (only)",
    )


_deselected = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_deselected] = 0  # the marker itself is registered in pyproject.toml


@pytest.hookimpl(trylast=True)  # after -m and -k: only what the run selected is split
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("serial")
    if mode == "all":
        return
    keep = mode == "only"
    chosen = [item for item in items if (item.get_closest_marker(MARK) is not None) == keep]
    dropped = [item for item in items if (item.get_closest_marker(MARK) is not None) != keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
        config.stash[_deselected] += len(dropped)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    workeroutput: dict[str, Any] | None = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: tell the controller what this phase left to the other
        workeroutput["serial_deselected"] = config.stash[_deselected]
    elif session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and config.stash[_deselected]:
        session.exitstatus = pytest.ExitCode.OK


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's controller: collects no tests itself, so it learns the count from its workers."""
    count = getattr(node, "workeroutput", {}).get("serial_deselected", 0)
    config: pytest.Config = node.config
    config.stash[_deselected] = max(config.stash[_deselected], count)
