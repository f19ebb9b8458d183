"""Unit tests for the jobs' temporary folders: private, and never reached through a symbolic link."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, cast

import pytest

from tests.helpers import make_request
from videoworker import ConfigError, Settings
from videoworker.config import load_settings
from videoworker.core.context import StepContext
from videoworker.core.jobs import Job
from videoworker.core.outcomes import Move
from videoworker.core.polling import PollPlanner
from videoworker.core.states import JobState
from videoworker.core.steps.deliver import deliver
from videoworker.core.workdir import UnsafeFolder, Workdir
from videoworker.errors import DownloadError
from videoworker.ledger.base import JobRecord


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    made = Workdir(tmp_path / "data" / "tmp")
    made.prepare()
    return made


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder a planted link points at, with a file that must survive."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "precious").write_bytes(b"keep me")
    return folder


def untouched(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["precious"] and (folder / "precious").read_bytes() == b"keep me"


def test_the_root_and_each_job_folder_are_private(workdir: Workdir) -> None:
    old = os.umask(0o022)  # the usual umask: 0700 must not depend on a stricter one
    try:
        part = workdir.part("job-1", 2)
    finally:
        os.umask(old)
    assert part == workdir.root / "job-1" / "2.part"
    assert mode(workdir.root) == 0o700 and mode(workdir.root / "job-1") == 0o700
    assert workdir.part("job-1", 3).parent == part.parent  # the folder is reused, not refused


def test_a_link_at_a_job_folder_is_refused_and_its_target_untouched(workdir: Workdir, elsewhere: Path) -> None:
    (workdir.root / "job-1").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeFolder, match=r"tmp/job-1 is a symbolic link") as caught:
        workdir.part("job-1", 0)
    assert isinstance(caught.value, DownloadError) and caught.value.retryable is False
    assert untouched(elsewhere)


def test_clear_deletes_the_job_folder(workdir: Workdir) -> None:
    workdir.part("job-1", 0).write_bytes(b"partial")
    workdir.part("job-1.1", 0).write_bytes(b"neighbour")
    workdir.clear("job-1")
    assert not (workdir.root / "job-1").exists()
    assert (workdir.root / "job-1.1" / "0.part").read_bytes() == b"neighbour"


def test_clear_deletes_nothing_through_a_link_at_the_job_folder(workdir: Workdir, elsewhere: Path) -> None:
    (workdir.root / "job-1").symlink_to(elsewhere, target_is_directory=True)
    workdir.clear("job-1")
    assert untouched(elsewhere)


def test_a_root_swapped_for_a_link_after_start_is_neither_written_nor_cleared(workdir: Workdir, tmp_path: Path) -> None:
    """``tmp -> /home/x`` and a request named ``.ssh``: nothing under /home/x is touched."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_bytes(b"keys")
    workdir.root.rmdir()
    workdir.root.symlink_to(home, target_is_directory=True)
    with pytest.raises(UnsafeFolder, match="temporary files' folder tmp is a symbolic link"):
        workdir.part(".ssh", 0)
    workdir.clear(".ssh")
    assert (home / ".ssh" / "authorized_keys").read_bytes() == b"keys"
    assert sorted(p.name for p in home.iterdir()) == [".ssh"]


def test_a_root_that_is_a_link_refuses_the_start(tmp_path: Path, elsewhere: Path) -> None:
    root = tmp_path / "tmp"
    root.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=rf"{root} is a symbolic link"):
        Workdir(root).prepare()
    assert untouched(elsewhere)


class NoDownloads:
    """A provider the step must not reach: the folder is refused first."""

    async def download(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("downloaded into a folder that is a link")


async def no_catalogue() -> Any:
    raise AssertionError("not needed")


async def test_deliver_fails_the_job_cleanly_when_its_folder_is_a_link(tmp_path: Path, elsewhere: Path) -> None:
    """The deliver step's answer to a planted link: a final ``download_failed``, not a crash or endless retries."""
    settings: Settings = load_settings(None, data_dir=tmp_path / "data", openrouter_api_key="k")
    workdir = Workdir(settings.data_dir / "tmp")
    workdir.prepare()
    (workdir.root / "req-1").symlink_to(elsewhere, target_is_directory=True)
    ctx = StepContext(
        settings,
        cast(Any, NoDownloads()),
        cast(Any, None),
        PollPlanner(1.0, 2.0),
        workdir,
        intend=cast(Any, None),
        catalogue=no_catalogue,
    )
    record = JobRecord("req-1", JobState.COMPLETED, "acme/video-1", {}, job_id="gen-1", data={"output_count": 1})
    outcome = await deliver(Job(record, make_request("req-1")), ctx)
    assert isinstance(outcome, Move) and outcome.to is JobState.FAILED and outcome.error is not None
    assert outcome.error["code"] == "download_failed" and outcome.error["retryable"] is False
    assert "symbolic link" in outcome.error["message"] and str(tmp_path) not in outcome.error["message"]
    assert untouched(elsewhere)
