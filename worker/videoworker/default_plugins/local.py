"""Built-in plugin ``local``: keep every video under ``<data_dir>/videos/<id>/<index>.mp4``.

The video lands under a temporary name beside its target, is fsynced, then renamed, so a
reader never sees half a video and a repeat after a crash rewrites the same path. On the
same file system the verified download is hard-linked there, not copied: no second write
of every byte, and no second fsync of them. It is copied (in the kernel) when it sits on
another file system, or is not a file only this process holds.
Settings (``[plugins.local]``): ``dir`` overrides ``<data_dir>/videos``.

Videos are private: each file is created 0600, or 0640 with ``file_mode = "0640"`` (for a
group that serves them), whatever the umask; the folders this plugin creates are 0700,
or 0750 with 0640 (a group that may read the files must be able to reach them). Folders
that already exist keep their mode. A symbolic link in place of the videos folder, a
job's folder or the download is refused (:class:`StorageError`), never followed: whoever
can write into the data folder must not make the daemon write, or copy, anywhere else.
The videos folder's parent is the operator's and may be a link; ``dir`` itself may not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from videoworker import StorageError, StoredOutput, hookimpl, run_in_thread

if TYPE_CHECKING:
    from videoworker import OutputFile, Settings, VideoRequest

NAME = "local"

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: link() failures that mean "copy instead": another file system, or none of hard links (or too many)
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP})


# trylast: a default any other storage plugin runs before, so an installed store (S3, …)
# becomes the primary location and the local copy an extra one
@hookimpl(trylast=True)
async def videoworker_store_output(request: VideoRequest, output: OutputFile, settings: Settings) -> StoredOutput:
    """Copy the output into place atomically and return its ``file://`` URI."""
    configured = Path(settings.plugins.get(NAME, {}).get("dir") or settings.data_dir / "videos")
    if output.request_id in ("", ".", "..") or os.sep in output.request_id:
        raise StorageError(f"request id {output.request_id!r} does not name a directory under {configured}")
    # resolving walks the path with a system call per part: in the thread, with the copy; a
    # cancel waits for the thread, so no file lands after the hook has ended (the stop lets a
    # long copy go, but keeps the job's lease: nobody stores beside it)
    target = await run_in_thread(_store, output, configured, int(settings.file_mode, 8))
    return StoredOutput(NAME, target.as_uri())


def _store(output: OutputFile, configured: Path, mode: int) -> Path:
    """Place ``output`` under ``configured`` (its parent resolved, so the URI is absolute); return where."""
    target = configured.parent.resolve() / configured.name / output.request_id / f"{output.index}.mp4"
    _place(output.path, target, mode)
    return target


def _place(source: Path, target: Path, mode: int) -> None:
    folder_mode = 0o750 if mode & 0o040 else 0o700
    target.parent.parent.parent.mkdir(parents=True, exist_ok=True)
    root = _open_dir(str(target.parent.parent), None, folder_mode, f"videos folder {target.parent.parent}")
    try:
        folder = _open_dir(target.parent.name, root, folder_mode, f"job folder {target.parent}")
    finally:
        os.close(root)
    try:
        _write(source, target, folder, mode)
        os.fsync(folder)  # the rename itself is durable
    finally:
        os.close(folder)


def _open_dir(name: str, parent: int | None, mode: int, what: str) -> int:
    """Open a folder, made with ``mode`` when missing, without following a link in its place."""
    try:
        os.mkdir(name, mode, dir_fd=parent)
        created = True
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        _refuse_link(exc, name, parent, what)
        raise
    if created:
        os.fchmod(fd, mode)  # the umask must not take away the group's access when 0640 is asked for
    return fd


def _write(source: Path, target: Path, folder: int, mode: int) -> None:
    """Link or copy ``source`` to a fresh temporary name in ``folder``, fsync it, and rename it over ``target``."""
    tmp = f".{target.name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=folder)  # a crashed run's leftover; unlinking a link leaves its target alone
    src = _open_source(source)
    try:
        linked = _link(src, source, tmp, folder)
        dst = src if linked else os.open(tmp, _NEW_FILE, mode, dir_fd=folder)
        try:
            os.fchmod(dst, mode)
            if not linked:
                _copy(src, dst)
            os.fsync(dst)  # a linked download was fsynced when it was written: this one finds nothing to do
            os.replace(target.parent / tmp, target)
            _check_landed(target, folder, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        finally:
            if dst != src:
                os.close(dst)
    finally:
        os.close(src)


def _open_source(source: Path) -> int:
    try:
        return os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        _refuse_link(exc, str(source), None, f"download {source}")
        raise


def _link(src: int, source: Path, tmp: str, folder: int) -> bool:
    """Hard-link the download (open as ``src``) at ``tmp`` in ``folder``; False when a copy must do instead.

    Only a regular file this process owns and nobody else links to is shared: a stored video
    must not be reachable through a name someone else holds. Another file system, or one
    without hard links, means a copy; so does a file swapped in since it was opened.
    """
    mine = os.fstat(src)
    if not stat.S_ISREG(mine.st_mode) or mine.st_uid != os.geteuid() or mine.st_nlink != 1:
        return False
    try:
        os.link(source, tmp, dst_dir_fd=folder, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_LINK:
            return False
        raise
    landed = os.stat(tmp, dir_fd=folder, follow_symlinks=False)
    if (landed.st_dev, landed.st_ino) != (mine.st_dev, mine.st_ino):
        os.unlink(tmp, dir_fd=folder)
        return False
    return True


def _copy(src: int, dst: int) -> None:
    # in the kernel, without a buffer per copy: up to max_concurrent_downloads run at once
    offset, size = 0, os.fstat(src).st_size
    try:
        while offset < size and (sent := os.sendfile(dst, src, offset, size - offset)):
            offset += sent
    except OSError as exc:  # a file system without sendfile between files: copy through a buffer
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    if offset < size:
        with open(src, "rb", closefd=False) as reader, open(dst, "wb", closefd=False) as writer:
            reader.seek(offset)
            writer.seek(offset)
            shutil.copyfileobj(reader, writer, 64 * 1024)


def _check_landed(target: Path, folder: int, written: int) -> None:
    """The rename went by path: make sure it put our file in the folder that was checked, not a swapped-in one."""
    mine = os.fstat(written)
    try:
        landed = os.stat(target.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        landed = None
    if landed is None or (landed.st_dev, landed.st_ino) != (mine.st_dev, mine.st_ino):
        raise StorageError(f"{target.parent} was replaced while the video was stored into it; refusing the result")


def _refuse_link(exc: OSError, name: str, parent: int | None, what: str) -> None:
    """Turn "open refused a link" into a :class:`StorageError` that says so; other errors pass."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode):
        raise StorageError(f"the {what} is a symbolic link; refusing to follow it") from None
