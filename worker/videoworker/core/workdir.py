"""Each job's temporary files: ``<data_dir>/tmp/<request id>/<index>.part``.

One folder per job, so finishing a job removes exactly its own downloads and never a
neighbour's (a pattern such as ``<id>.*.part`` would also match job ``<id>.1``'s files),
and a killed predecessor's leftovers go with the job that adopts them.

The folders are private (0700), and a symbolic link in place of the root or of a job's
folder is refused, never followed: whoever can write into the data folder must not be
able to make the daemon download into, or delete, a folder of their choosing (ids come
from producers, so ``tmp -> /home/videoworker`` and a request ``.ssh`` would otherwise
delete that folder when the job ends). A link at the root stops the start; a link at a
job's folder fails that job with ``download_failed``. To put the temporary files on
another disk, link the data folder itself, not ``tmp``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Container
from pathlib import Path

import structlog

from videoworker.errors import ConfigError, DownloadError
from videoworker.ledger.base import Ledger

log = structlog.get_logger("videoworker.engine")

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFolder(DownloadError):
    """Raised when a job's temporary folder, or their root, is a symbolic link; retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Workdir:
    """The root of every job's temporary folder; created at start with mode 0700."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        """Create the root at start; a link in its place refuses the start (:class:`ConfigError`)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.close(self._open_root(str(self.root)))
        except UnsafeFolder as exc:
            raise ConfigError(f"{exc}; remove it (a real folder is made at start), or link the data folder") from None

    def part(self, request_id: str, index: int) -> Path:
        """Where output ``index`` of ``request_id`` is downloaded; its folder exists afterwards.

        Raises :class:`UnsafeFolder` when that folder or the root is a symbolic link.
        """
        folder = self._folder(request_id)
        root = self._open_root()
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(request_id, 0o700, dir_fd=root)
            os.close(_open_dir(request_id, root, f"the temporary folder {self.root.name}/{request_id}"))
        finally:
            os.close(root)
        return folder / f"{index}.part"

    def clear(self, request_id: str) -> None:
        """Delete the job's folder and everything in it (called once the job is finished).

        Through a link nothing is deleted: not at the root, not at the job's folder.
        """
        self._folder(request_id)
        try:
            root = self._open_root()
        except (OSError, UnsafeFolder):
            return
        try:
            shutil.rmtree(request_id, ignore_errors=True, dir_fd=root)  # refuses a link at request_id
        finally:
            os.close(root)

    def folders(self) -> list[str]:
        """The request ids that have a temporary folder now (for the sweep at start)."""
        try:
            return [entry.name for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False)]
        except OSError:
            return []

    def _open_root(self, shown: str | None = None) -> int:
        """The root, opened; ``shown`` is how an error names it (not the full path in a job's failed event)."""
        return _open_dir(str(self.root), None, f"the temporary files' folder {shown or self.root.name}")

    def _folder(self, request_id: str) -> Path:
        folder = self.root / request_id
        # intake refuses ids such as "." or "..", so this only guards against a corrupted ledger row
        if folder.parent != self.root or request_id in ("", ".", ".."):
            raise ValueError(f"request id {request_id!r} does not name a folder under {self.root}")
        return folder


async def sweep_finished(workdir: Workdir, ledger: Ledger, held: Container[str]) -> int:
    """Delete the temporary folders of finished or unknown jobs; return how many went.

    A job's folder is cleared when it finishes, but a kill between recording the final
    move and clearing leaves it, and nobody runs a finished job again. So at start every
    folder whose job the ledger reports finished (or does not know) goes; a job ``held``
    here, or a peer's job in flight, is not finished, so a shared data folder is safe.
    """
    swept = 0
    for request_id in workdir.folders():
        if request_id in held:
            continue
        record = await ledger.get(request_id)
        if record is None or record.state.terminal:
            workdir.clear(request_id)
            swept += 1
    if swept:
        log.info("removed temporary files of finished jobs", jobs=swept)
    return swept


def _open_dir(name: str, parent: int | None, what: str) -> int:
    """Open a folder without following a link in its place; :class:`UnsafeFolder` names ``what`` if one is there."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode):
            raise UnsafeFolder(f"{what} is a symbolic link; refusing to follow it") from None
        raise
