"""Built-in plugin ``local``: keep every video under ``<data_dir>/videos/<id>/<index>.mp4``.

The copy lands in a temporary file beside its target, is fsynced, then renamed, so a
reader never sees half a video and a repeat after a crash rewrites the same path.
Settings (``[plugins.local]``): ``dir`` overrides ``<data_dir>/videos``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from videoworker import StorageError, StoredOutput, hookimpl

if TYPE_CHECKING:
    from videoworker import OutputFile, Settings, VideoRequest

NAME = "local"


# trylast: a default any other storage plugin runs before, so an installed store (S3, …)
# becomes the primary location and the local copy an extra one
@hookimpl(trylast=True)
async def videoworker_store_output(request: VideoRequest, output: OutputFile, settings: Settings) -> StoredOutput:
    """Copy the output into place atomically and return its ``file://`` URI."""
    root = Path(settings.plugins.get(NAME, {}).get("dir") or settings.data_dir / "videos").resolve()
    target = (root / output.request_id / f"{output.index}.mp4").resolve()
    if target.parent.parent != root:
        raise StorageError(f"request id {output.request_id!r} does not name a directory under {root}")
    await asyncio.to_thread(_place, output.path, target)
    return StoredOutput(NAME, target.as_uri())


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
