"""Unit tests for the built-in ``local`` storage plugin: atomic, idempotent, confined to its folder."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.helpers import make_output, make_request
from videoworker import Settings, StorageError, StoredOutput
from videoworker.config import load_settings
from videoworker.default_plugins import local as local_plugin
from videoworker.testing.recorder import until


def uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    assert parts.scheme == "file"
    return Path(unquote(parts.path))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data", openrouter_api_key="k")


async def test_local_storage_writes_the_file(settings: Settings, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    stored = await local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, data, index=1), settings)
    target = (settings.data_dir / "videos" / "req-1" / "1.mp4").resolve()
    assert stored == StoredOutput("local", target.as_uri())
    assert uri_path(stored.location) == target
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["1.mp4"]  # no temp file left behind


@pytest.mark.parametrize("sendfile", ["works", "refused", "stops_early"])
async def test_local_storage_copies_every_byte_however_the_kernel_copy_goes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sendfile: str
) -> None:
    """The copy runs in the kernel; where that is refused or stops short, a buffered copy finishes it."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    real = os.sendfile

    def limited(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if sendfile == "refused":
            raise OSError(errno.EINVAL, "sendfile between these files is not supported")
        if sendfile == "stops_early" and offset >= 1024 * 1024:
            return 0
        return real(out_fd, in_fd, offset, min(count, 1024 * 1024))

    monkeypatch.setattr(local_plugin.os, "sendfile", limited)
    monkeypatch.setattr(local_plugin.os, "link", no_link(errno.EXDEV))  # as from another file system
    stored = await local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, data), settings)
    assert uri_path(stored.location).read_bytes() == data


def no_link(code: int) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code))

    return refuse


async def test_a_download_on_the_same_file_system_is_linked_not_copied(settings: Settings, tmp_path: Path) -> None:
    """The stored video is the verified download itself (no second write, no second fsync), with the file mode."""
    output = make_output(tmp_path, b"V" * 5000)
    stored = await local_plugin.videoworker_store_output(make_request(), output, settings)
    target = uri_path(stored.location)
    assert os.stat(target).st_ino == os.stat(output.path).st_ino and os.stat(target).st_mode & 0o777 == 0o600
    output.path.unlink()  # the job's temp folder goes when it finishes; the video stays
    assert target.read_bytes() == b"V" * 5000 and os.stat(target).st_nlink == 1


@pytest.mark.parametrize("why", ["another_link", "exdev", "eperm"])
async def test_a_download_that_cannot_be_linked_safely_is_copied(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """A download someone else also links to is copied, so the video is nobody else's; so is one link() refuses."""
    output = make_output(tmp_path, b"C" * 5000)
    if why == "another_link":
        os.link(output.path, tmp_path / "elsewhere")
    else:
        monkeypatch.setattr(local_plugin.os, "link", no_link(errno.EXDEV if why == "exdev" else errno.EPERM))
    stored = await local_plugin.videoworker_store_output(make_request(), output, settings)
    target = uri_path(stored.location)
    assert os.stat(target).st_ino != os.stat(output.path).st_ino and target.read_bytes() == b"C" * 5000
    assert sorted(p.name for p in target.parent.iterdir()) == ["0.mp4"]


async def test_a_download_swapped_before_the_link_is_copied_from_what_was_opened(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another file takes the download's name between its check and the link, the link is undone, and
    the file that was opened and checked is copied instead."""
    output = make_output(tmp_path, b"checked" * 100)
    real_link = os.link

    def swap_then_link(src: Any, dst: Any, **kwargs: Any) -> None:
        os.rename(output.path, tmp_path / "kept")
        Path(output.path).write_bytes(b"planted")
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(local_plugin.os, "link", swap_then_link)
    stored = await local_plugin.videoworker_store_output(make_request(), output, settings)
    target = uri_path(stored.location)
    assert target.read_bytes() == b"checked" * 100 and os.stat(target).st_ino != os.stat(tmp_path / "kept").st_ino
    assert sorted(p.name for p in target.parent.iterdir()) == ["0.mp4"]


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


async def test_a_cancelled_store_ends_only_once_its_thread_has(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop cancels a store midway: the hook ends after the file is in place, never before it.

    With a bare ``asyncio.to_thread`` the hook ended at once and the thread placed the file
    afterwards, beside whatever the next owner's store did meanwhile.
    """
    started, gate = threading.Event(), threading.Event()
    replace = os.replace

    def slow_replace(src: Any, dst: Any) -> None:
        started.set()
        gate.wait(10)
        replace(src, dst)

    monkeypatch.setattr(local_plugin.os, "replace", slow_replace)
    store = asyncio.create_task(
        local_plugin.videoworker_store_output(make_request(), make_output(tmp_path, b"video"), settings)
    )
    await until(started.is_set, 5, "the thread to reach its rename")
    store.cancel()
    ended, _ = await asyncio.wait({store}, timeout=0.05)  # wakes at once if the cancel goes through
    assert not ended, "the hook ended while its thread was still placing the file"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await store
    target = settings.data_dir / "videos" / "req-1" / "0.mp4"
    assert target.read_bytes() == b"video" and sorted(p.name for p in target.parent.iterdir()) == ["0.mp4"]


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
