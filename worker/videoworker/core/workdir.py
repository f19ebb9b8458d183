"""Each job's temporary files: ``<data_dir>/tmp/<request id>/<index>.part``.

One folder per job, so finishing a job removes exactly its own downloads and never a
neighbour's (a pattern such as ``<id>.*.part`` would also match job ``<id>.1``'s files),
and a killed predecessor's leftovers go with the job that adopts them.
"""

from __future__ import annotations

import shutil
from pathlib import Path


class Workdir:
    """The root of every job's temporary folder; created at start with mode 0700."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def part(self, request_id: str, index: int) -> Path:
        """Where output ``index`` of ``request_id`` is downloaded; its folder exists afterwards."""
        folder = self._folder(request_id)
        folder.mkdir(exist_ok=True, mode=0o700)
        return folder / f"{index}.part"

    def clear(self, request_id: str) -> None:
        """Delete the job's folder and everything in it (called once the job is finished)."""
        shutil.rmtree(self._folder(request_id), ignore_errors=True)

    def _folder(self, request_id: str) -> Path:
        folder = self.root / request_id
        # intake refuses ids such as "." or "..", so this only guards against a corrupted ledger row
        if folder.parent != self.root or request_id in ("", ".", ".."):
            raise ValueError(f"request id {request_id!r} does not name a folder under {self.root}")
        return folder
