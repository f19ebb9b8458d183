"""Object keys: the rules a key or prefix must follow, and the template that names each output.

Keys are checked twice: when the settings and a request's ``delivery.s3`` options are
validated (so a bad one is refused before any money is spent), and once more when the
final key is built, so nothing reaches S3 that could escape the configured prefix.
"""

from __future__ import annotations

import string

#: Placeholders a ``key_template`` may use.
PLACEHOLDERS = frozenset({"id", "index", "prefix"})
#: S3's limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
# a sample used to try a template at start; the id pattern allows letters, digits and ._:-
_SAMPLE = {"id": "req-1", "index": 0, "prefix": "videos/"}


def check_path(text: str, *, folder: bool) -> str:
    """Return ``text`` if it is a relative key (``folder``: a prefix, which may end with ``/``); else ValueError.

    Refused: absolute or Windows paths, ``.``/``..`` segments, empty segments, URLs and
    control characters: anything that could name a place outside the configured prefix.
    """
    if "://" in text:
        raise ValueError("must be a key, not a URL: the bucket is chosen by the daemon's settings")
    if text.startswith("/"):
        raise ValueError("must be relative: it may not start with '/'")
    if "\\" in text:
        raise ValueError("may not contain '\\'")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError("may not contain control characters")
    segments = text.split("/")
    if folder and segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment in ("", ".", ".."):
            shown = segment or "an empty segment ('//' or a trailing '/')"
            raise ValueError(f"may not contain {shown!r}" if segment else f"may not contain {shown}")
    if len(text.encode()) > MAX_KEY_BYTES // 2:
        raise ValueError(f"is longer than {MAX_KEY_BYTES // 2} bytes")
    return text


def as_folder(prefix: str) -> str:
    """``prefix`` with one trailing ``/`` (empty stays empty), so ``videos`` cannot also match ``videos-old``."""
    return prefix.rstrip("/") + "/" if prefix else ""


def check_template(template: str) -> str:
    """Return ``template`` if it names a valid key for every output; else ValueError saying why."""
    try:
        parsed = [(field, conversion) for _, field, _, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc})") from None
    fields = [field for field, _ in parsed if field is not None]
    unknown = sorted({field for field in fields if field not in PLACEHOLDERS})
    if unknown:
        names = ", ".join("{" + name + "}" for name in unknown) if any(unknown) else "{}"
        raise ValueError(f"uses unknown placeholder(s) {names}; known: {{id}}, {{index}}, {{prefix}}")
    if any(conversion for _, conversion in parsed):
        raise ValueError("may not use conversions such as !r or !s")
    if not template.startswith("{prefix}"):
        raise ValueError("must start with {prefix}, so that every key stays inside the configured prefix")
    missing = sorted(PLACEHOLDERS - {"prefix"} - set(fields))
    if missing:
        names = ", ".join("{" + name + "}" for name in missing)
        raise ValueError(f"must contain {names}, so that every output gets a key of its own")
    try:
        sample = template.format(**_SAMPLE)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"cannot be filled in ({exc})") from None
    try:
        check_path(sample, folder=False)
    except ValueError as exc:
        raise ValueError(f"gives an invalid key {sample!r}: it {exc}") from None
    return template


def template_key(template: str, *, prefix: str, request_id: str, index: int) -> str:
    """The key the template gives for one output (the template was checked at start)."""
    return template.format(id=request_id, index=index, prefix=prefix)


def explicit_key(prefix: str, key: str, index: int) -> str:
    """The key of output ``index`` when the request named one: ``clip.mp4``, then ``clip-1.mp4``, ``clip-2.mp4``…

    A job may produce several outputs and a request names one key, so every output after
    the first gets ``-<index>`` before its extension: deterministic, so a repeat writes the
    same keys.
    """
    if index == 0:
        return prefix + key
    folder, _, name = key.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    name = f"{stem}-{index}.{extension}" if dot and stem else f"{name}-{index}"
    return prefix + (f"{folder}/{name}" if folder else name)


def final_check(key: str, prefix: str) -> str:
    """Refuse a built key that is malformed or outside ``prefix``; the last guard before S3 sees it."""
    check_path(key, folder=False)
    if not key.startswith(prefix):
        raise ValueError(f"is outside the configured prefix {prefix!r}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"is longer than S3's {MAX_KEY_BYTES}-byte limit")
    return key
