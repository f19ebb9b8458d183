"""Small, real, playable MP4 files for the simulator, made without any external binary.

This module owns the simulated "generated video": Motion-JPEG frames drawn with Pillow
and wrapped by a minimal ISO-BMFF (MP4) muxer written here (``ftyp``, ``free``,
``mdat``, ``moov`` with one ``jpeg`` video track). Every (job id, output index) pair
gives a different file: a hash of both picks one of :data:`LOOKS` looks (colours, the
moving marker's height), and the ``free`` box carries both verbatim, so two jobs never
share bytes. Generation is deterministic (the same job id always gives the same bytes).

Each look's frames are drawn once (about 7 ms with Pillow) and kept, so a video costs
the muxing only. Drawing per job made the simulator spend most of a core at 100
completions a second, on the same 2 cores as the daemon it stands in for the provider
of; a real provider does not bill its rendering to the daemon's host.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterable
from functools import lru_cache

from PIL import Image, ImageDraw

#: Frame geometry and timing of every simulated video: 10 frames at 10 fps = 1 s.
WIDTH = 160
HEIGHT = 90
FRAMES = 10
FPS = 10
_TIMESCALE = 1000  # media and movie timescale (ticks per second)
_JPEG_QUALITY = 70
#: How many different looks the frames can have; each look's frames are drawn once.
LOOKS = 64

# Identity transformation matrix used by mvhd and tkhd (16.16 and 2.30 fixed point).
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def make_video(job_id: str, index: int = 0) -> bytes:
    """Return the MP4 bytes of output ``index`` of ``job_id``.

    Called by the server the first time a completed job's output is needed (poll,
    download or stats); the caller caches the result.
    """
    look = hashlib.sha256(f"{job_id}#{index}".encode()).digest()[0] % LOOKS
    tag = f"videoworker-simulator {job_id} index={index}".encode()
    return mux_mjpeg(list(_frames(look)), width=WIDTH, height=HEIGHT, fps=FPS, tag=tag)


@lru_cache(maxsize=LOOKS)
def _frames(look: int) -> tuple[bytes, ...]:
    """The JPEG frames of one look, drawn on first use."""
    digest = hashlib.sha256(f"look#{look}".encode()).digest()
    return tuple(_draw_frame(look, digest, n) for n in range(FRAMES))


def mux_mjpeg(frames: list[bytes], *, width: int, height: int, fps: int, tag: bytes = b"") -> bytes:
    """Wrap JPEG ``frames`` into an MP4 with one Motion-JPEG track, moov at the end.

    ``tag`` goes into a ``free`` box (ignored by players) before the media data.
    """
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
    free = _box(b"free", tag)
    mdat = _box(b"mdat", b"".join(frames))
    first_sample_offset = len(ftyp) + len(free) + 8
    moov = _moov([len(f) for f in frames], first_sample_offset, width, height, fps)
    return ftyp + free + mdat + moov


def _draw_frame(look: int, digest: bytes, n: int) -> bytes:
    """Draw frame ``n``: a look-coloured background, a moving square and a frame counter."""
    background = (digest[0], digest[1], digest[2])
    marker = (255 - digest[0], 255 - digest[1], 255 - digest[2])
    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    draw = ImageDraw.Draw(image)
    step = (WIDTH - 20) // max(FRAMES - 1, 1)
    top = 30 + digest[3] % 30
    draw.rectangle((n * step, top, n * step + 19, top + 19), fill=marker)
    draw.text((4, 4), f"simulated video, look {look}", fill=marker)
    draw.text((4, HEIGHT - 14), f"frame {n + 1}/{FRAMES}", fill=marker)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=_JPEG_QUALITY)
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    """One ISO-BMFF box: 32-bit size, 4-byte type, payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    """A "full box": a box whose payload starts with version (8 bits) and flags (24 bits)."""
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def _container(kind: bytes, children: Iterable[bytes]) -> bytes:
    return _box(kind, b"".join(children))


# Field layouts (ISO/IEC 14496-12), after the version/flags word of each full box.
# mvhd v0: creation, modification, timescale, duration, rate, volume, reserved,
#          matrix, pre_defined, next_track_id
_MVHD = ">IIIIIH10s36s24sI"
# tkhd v0: creation, modification, track_id, reserved, duration, reserved, layer,
#          alternate_group, volume, reserved, matrix, width, height (16.16)
_TKHD = ">IIIII8shhhH36sII"
# mdhd v0: creation, modification, timescale, duration, language, pre_defined
_MDHD = ">IIIIHH"
# VisualSampleEntry: reserved, data_reference_index, pre_defined/reserved, width, height,
#          horiz/vert resolution (72 dpi), reserved, frame_count, compressor, depth, pre_defined
_VISUAL_ENTRY = ">6sH16sHHIIIH32sHh"
_LANGUAGE_UND = 0x55C4  # "und", packed ISO-639-2/T
_TRACK_FLAGS = 0x3  # enabled | in movie


def _moov(sizes: list[int], offset: int, width: int, height: int, fps: int) -> bytes:
    """The movie header and its single video track."""
    delta = _TIMESCALE // fps
    duration = delta * len(sizes)
    fields = (0, 0, _TIMESCALE, duration, 0x10000, 0x100, b"", _MATRIX, b"", 2)
    mvhd = _full_box(b"mvhd", 0, 0, struct.pack(_MVHD, *fields))
    trak = _trak(sizes, offset, (width, height), delta, duration)
    return _container(b"moov", [mvhd, trak])


def _trak(sizes: list[int], offset: int, dims: tuple[int, int], delta: int, duration: int) -> bytes:
    """One video track: header, media header, handler and the media information."""
    width, height = dims
    fields = (0, 0, 1, 0, duration, b"", 0, 0, 0, 0, _MATRIX, width << 16, height << 16)
    tkhd = _full_box(b"tkhd", 0, _TRACK_FLAGS, struct.pack(_TKHD, *fields))
    mdhd_fields = (0, 0, _TIMESCALE, duration, _LANGUAGE_UND, 0)
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(_MDHD, *mdhd_fields))
    hdlr = _full_box(b"hdlr", 0, 0, bytes(4) + b"vide" + bytes(12) + b"VideoHandler\x00")
    minf = _container(b"minf", [_vmhd_dinf(), _stbl(sizes, offset, width, height, delta)])
    return _container(b"trak", [tkhd, _container(b"mdia", [mdhd, hdlr, minf])])


def _vmhd_dinf() -> bytes:
    """Video media header and a data reference saying "the media is in this file"."""
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dref = _full_box(b"dref", 0, 0, struct.pack(">I", 1) + _full_box(b"url ", 0, 1, b""))
    return vmhd + _container(b"dinf", [dref])


def _stbl(sizes: list[int], offset: int, width: int, height: int, delta: int) -> bytes:
    """Sample table: one chunk holding every frame; every frame is a sync sample."""
    count = len(sizes)
    stsd = _full_box(b"stsd", 0, 0, struct.pack(">I", 1) + _jpeg_sample_entry(width, height))
    stts = _full_box(b"stts", 0, 0, struct.pack(">III", 1, count, delta))
    stsc = _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1))
    stsz = _full_box(b"stsz", 0, 0, struct.pack(f">II{count}I", 0, count, *sizes))
    stco = _full_box(b"stco", 0, 0, struct.pack(">II", 1, offset))
    return _container(b"stbl", [stsd, stts, stsc, stsz, stco])


def _jpeg_sample_entry(width: int, height: int) -> bytes:
    """VisualSampleEntry with the ``jpeg`` (Photo-JPEG / Motion-JPEG) coding name."""
    name = b"Motion JPEG"
    compressor = bytes([len(name)]) + name  # Pascal string, zero-padded to 32 by struct
    dpi72 = 0x480000
    fields = (b"", 1, b"", width, height, dpi72, dpi72, 0, 1, compressor, 0x18, -1)
    return _box(b"jpeg", struct.pack(_VISUAL_ENTRY, *fields))
