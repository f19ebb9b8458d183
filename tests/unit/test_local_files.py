"""The ``local`` plugin's files: private modes, and no symbolic link planted in the data folder is followed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_output, make_request
from videoworker import Settings, StorageError
from videoworker.config import load_settings
from videoworker.default_plugins import local as local_plugin

DATA = b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def settings_for(tmp_path: Path, **overrides: str) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data", openrouter_api_key="k", **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask, 022: the modes asked for must not depend on a stricter one."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the videos folder that a planted link points at; it must never change."""
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir()
    path.write_bytes(b"keep me")
    return path


def videos(settings: Settings) -> Path:
    return settings.data_dir / "videos"


async def store(settings: Settings, tmp_path: Path, data: bytes = DATA) -> Path:
    stored = await local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, data), settings)
    return Path(stored.location.removeprefix("file://"))


def temp_name(index: int = 0) -> str:
    """The plugin's temporary file beside ``<index>.mp4`` (this process writes it)."""
    return f".{index}.mp4.{os.getpid()}.tmp"


@pytest.mark.usefixtures("umask")
async def test_a_video_is_0600_in_0700_folders(settings: Settings, tmp_path: Path) -> None:
    target = await store(settings, tmp_path)
    assert target.read_bytes() == DATA
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700 and mode(videos(settings)) == 0o700


async def test_file_mode_0640_gives_the_group_read_files_in_0750_folders(tmp_path: Path) -> None:
    """Asked for explicitly, the group's read survives even a umask that would strip it."""
    settings = settings_for(tmp_path, file_mode="0640")
    old = os.umask(0o077)
    try:
        target = await store(settings, tmp_path)
    finally:
        os.umask(old)
    assert mode(target) == 0o640
    assert mode(target.parent) == 0o750 and mode(videos(settings)) == 0o750


@pytest.mark.usefixtures("umask")
async def test_existing_folders_keep_their_mode(settings: Settings, tmp_path: Path) -> None:
    (videos(settings) / "req-1").mkdir(parents=True)
    os.chmod(videos(settings), 0o755)
    os.chmod(videos(settings) / "req-1", 0o711)
    target = await store(settings, tmp_path)
    assert mode(target) == 0o600
    assert mode(videos(settings)) == 0o755 and mode(target.parent) == 0o711


async def test_a_link_at_the_job_folder_is_refused_and_its_target_untouched(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    videos(settings).mkdir(parents=True)
    (videos(settings) / "req-1").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(StorageError, match=r"job folder .*/videos/req-1 is a symbolic link"):
        await store(settings, tmp_path)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]
    assert victim.read_bytes() == b"keep me"
    assert (videos(settings) / "req-1").is_symlink()


async def test_a_link_at_the_videos_folder_is_refused(settings: Settings, tmp_path: Path, victim: Path) -> None:
    settings.data_dir.mkdir(parents=True)
    videos(settings).symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(StorageError, match=r"videos folder .*/videos is a symbolic link"):
        await store(settings, tmp_path)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]


async def test_a_dangling_link_at_the_job_folder_creates_nothing_where_it_points(
    settings: Settings, tmp_path: Path
) -> None:
    videos(settings).mkdir(parents=True)
    nowhere = tmp_path / "nowhere"
    (videos(settings) / "req-1").symlink_to(nowhere, target_is_directory=True)
    with pytest.raises(StorageError, match="symbolic link"):
        await store(settings, tmp_path)
    assert not nowhere.exists()


async def test_a_link_at_the_temp_path_is_not_followed(settings: Settings, tmp_path: Path, victim: Path) -> None:
    """A stale temporary name holding a link: the link goes, the victim stays, the video lands."""
    folder = videos(settings) / "req-1"
    folder.mkdir(parents=True)
    (folder / temp_name()).symlink_to(victim)
    target = await store(settings, tmp_path)
    assert victim.read_bytes() == b"keep me"
    assert target.read_bytes() == DATA and not target.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ["0.mp4"]


async def test_a_link_at_the_target_is_replaced_not_written_through(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    folder = videos(settings) / "req-1"
    folder.mkdir(parents=True)
    (folder / "0.mp4").symlink_to(victim)
    target = await store(settings, tmp_path)
    assert victim.read_bytes() == b"keep me"
    assert not target.is_symlink() and target.read_bytes() == DATA


async def test_a_download_that_is_a_link_is_not_copied(settings: Settings, tmp_path: Path, victim: Path) -> None:
    """A download swapped for a link to a secret must not be copied where a group may read it."""
    output = make_output(tmp_path, DATA)
    output.path.unlink()
    output.path.symlink_to(victim)
    with pytest.raises(StorageError, match=r"download .* is a symbolic link"):
        await local_plugin.videoworker_store_output(make_request(), output, settings)
    folder = videos(settings) / "req-1"
    assert not any(folder.iterdir())


async def test_a_folder_swapped_during_the_rename_is_detected(
    settings: Settings, tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename goes by path: if the job folder is replaced under it, the result is refused."""
    real_replace = os.replace
    folder = videos(settings) / "req-1"

    decoy = victim.parent / temp_name()
    decoy.write_bytes(b"the attacker's")

    def swap_then_replace(src: str | Path, dst: str | Path) -> None:
        folder.rename(tmp_path / "moved-away")
        folder.symlink_to(victim.parent, target_is_directory=True)  # the rename now goes through a link
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", swap_then_replace)
    with pytest.raises(StorageError, match="replaced while the video was stored"):
        await store(settings, tmp_path)
    assert victim.read_bytes() == b"keep me"
