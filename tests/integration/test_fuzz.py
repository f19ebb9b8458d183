"""Hypothesis-generated bad and random input against one running daemon.

How the examples are made (deterministic and fast): each message kind has a hypothesis
strategy, and :func:`_examples` runs a throw-away ``@given`` function with
``derandomize=True``, ``database=None`` and only the ``generate`` phase, which simply
collects what hypothesis draws. The same list comes out on every run (no example
database, no shrinking), it costs well under a second, and the async test then
publishes the whole batch to ONE daemon instead of starting a daemon per example.

An independent oracle (:func:`_accepts`) restates the wire contract and the model
catalogue, so every message has an expected outcome: valid ones must complete, every
other one must get a failed reply with a validation code *and* a dead letter. The
simulator runs with ``validate_capabilities=True`` and every body it received is
checked again, so a request that slipped past validation shows up as a
``provider_rejected`` job or an invalid body.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import Observer
from videoworker.contract.request import LOCAL_FIELDS
from videoworker_devtools.simulator import SimulatorThread
from videoworker_devtools.simulator.catalogue import ALL_ASPECT_RATIOS, ALL_RESOLUTIONS, DEFAULT_VIDEO_MODELS

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_PROMPT_CHARS = 8000
MAX_METADATA_BYTES = 16 * 1024
MODELS: dict[str, dict[str, Any]] = {m["id"]: m for m in DEFAULT_VIDEO_MODELS}
ALL_SIZES = sorted({s for m in DEFAULT_VIDEO_MODELS for s in (m["supported_sizes"] or [])})
FIELDS = [
    "id", "model", "prompt", "duration", "resolution", "aspect_ratio", "size", "input_references",
    "frame_images", "generate_audio", "seed", "provider", "previous_job_id", "session_id", "user",
    "trace", "metadata", "delivery",
]  # fmt: skip
VALIDATION_CODES = {"invalid_request", "model_unsupported"}
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# --- the oracle: the wire contract restated, independently of worker/messages.py ---------


def _str(v: Any, lo: int = 0, hi: int = 10**9) -> bool:
    return isinstance(v, str) and lo <= len(v) <= hi


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _media(v: Any) -> bool:
    return isinstance(v, dict) and _str(v.get("url"), 1, 1_000_000)


def _reference(v: Any) -> bool:
    if not isinstance(v, dict) or v.get("type") not in ("image_url", "audio_url", "video_url"):
        return False
    return all(v.get(k) is None or _media(v[k]) for k in ("image_url", "audio_url", "video_url"))


def _frame(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and v.get("type", "image_url") == "image_url"
        and _media(v.get("image_url"))
        and v.get("frame_type") in ("first_frame", "last_frame")
    )


_TYPE_CHECKS: dict[str, Any] = {
    "id": lambda v: _str(v) and bool(_ID.fullmatch(v)) and bool(v.strip(".")),
    "prompt": _str,
    "duration": lambda v: _int(v) and 0 < v <= 3600,
    "resolution": lambda v: _str(v, 1, 32),
    "aspect_ratio": lambda v: _str(v) and bool(re.fullmatch(r"\d{1,3}:\d{1,3}", v)),
    "size": lambda v: _str(v) and bool(re.fullmatch(r"\d{1,5}x\d{1,5}", v)),
    "input_references": lambda v: isinstance(v, list) and len(v) <= 16 and all(map(_reference, v)),
    "frame_images": lambda v: isinstance(v, list) and len(v) <= 2 and all(map(_frame, v)),
    "generate_audio": lambda v: isinstance(v, bool),
    "seed": _int,
    "provider": lambda v: isinstance(v, dict),
    "previous_job_id": lambda v: _str(v, 1, 256),
    "session_id": lambda v: _str(v, 0, 256),
    "user": lambda v: _str(v, 0, 256),
    "trace": lambda v: isinstance(v, dict),
    "metadata": lambda v: isinstance(v, dict),
    "delivery": lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
}


def _valid_request(data: dict[str, Any]) -> bool:
    """Would a correct daemon take this decoded JSON object (shape, types, prompt, capabilities)?"""
    if set(data) - set(FIELDS):
        return False
    if not _str(data.get("model"), 1, 200):
        return False
    if not all(data.get(k) is None or check(data[k]) for k, check in _TYPE_CHECKS.items()):
        return False
    prompt, images = data.get("prompt"), bool(data.get("frame_images") or data.get("input_references"))
    if prompt is None or not prompt.strip():
        if not images or prompt is not None:
            return False
    elif len(prompt) > MAX_PROMPT_CHARS:
        return False
    meta = data.get("metadata")
    if meta is not None and len(json.dumps(meta, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        return False
    model = MODELS.get(data["model"])
    if model is None:
        return False
    for option, listing in (
        ("resolution", "supported_resolutions"),
        ("aspect_ratio", "supported_aspect_ratios"),
        ("size", "supported_sizes"),
        ("duration", "supported_durations"),
    ):
        if data.get(option) is not None and model[listing] is not None and data[option] not in model[listing]:
            return False
    kinds = [f["frame_type"] for f in data.get("frame_images") or []]
    if model["supported_frame_images"] is not None and any(k not in model["supported_frame_images"] for k in kinds):
        return False
    if data.get("generate_audio") and model["generate_audio"] is False:
        return False
    return not (data.get("seed") is not None and model["seed"] is False)


def _accepts(raw: bytes, content_type: str | None) -> bool:
    if len(raw) > MAX_MESSAGE_BYTES:
        return False
    if content_type not in (None, "", "application/json") and not content_type.startswith("application/json;"):
        return False
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and _valid_request(data)


def _effective_id(raw: bytes, message_id: str) -> str:
    data = json.loads(raw)
    return data["id"] if data.get("id") is not None else message_id


# --- strategies ------------------------------------------------------------------------

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
JSON = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
_key = st.sampled_from(FIELDS) | st.text(max_size=16)
_base = {"model": "sim/fast", "prompt": "a fuzzed cat", "duration": 4}
_bad_utf8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xc0\xaf",
     b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"]
) | st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b"a" + b + b"a"))  # fmt: skip


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def _right_keys_wrong_types(draw: st.DrawFn) -> bytes:
    """A valid request with one or two fields replaced by an arbitrary JSON value."""
    body: dict[str, Any] = dict(_base)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True)):
        body[name] = draw(JSON)
    return _dumps(body)


@st.composite
def _capability_values(draw: st.DrawFn) -> bytes:
    """A well-typed request with random model, resolution, aspect ratio, size and duration values."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from([*MODELS, "openai/gpt-4o", "nobody/nothing", "SIM/FAST"])),
        "prompt": draw(st.text(min_size=1, max_size=40).filter(str.strip)),
    }
    if draw(st.booleans()):
        body["resolution"] = draw(
            st.sampled_from([*ALL_RESOLUTIONS, "720P", " 720p", "9000p", "", "x" * 33]) | st.text(max_size=6)
        )
    if draw(st.booleans()):
        body["aspect_ratio"] = draw(st.sampled_from(ALL_ASPECT_RATIOS) | st.from_regex(r"\A\d{1,4}:\d{1,3}\Z"))
    if draw(st.booleans()):
        body["size"] = draw(st.sampled_from(ALL_SIZES) | st.from_regex(r"\A\d{1,6}x\d{1,5}\Z"))
    if draw(st.booleans()):
        body["duration"] = draw(st.integers(min_value=-3, max_value=25) | st.sampled_from([0, 3600, 3601, 10**6]))
    if draw(st.booleans()):
        body["generate_audio"] = draw(st.booleans())
    if draw(st.booleans()):
        body["seed"] = draw(st.integers(min_value=-(2**40), max_value=2**40))
    if draw(st.booleans()):
        kinds = st.sampled_from(["first_frame", "last_frame"])
        body["frame_images"] = [
            {"type": "image_url", "image_url": {"url": "https://example.com/f.png"}, "frame_type": k}
            for k in draw(st.lists(kinds, max_size=2))
        ]
    return _dumps(body)


@st.composite
def _invalid_utf8(draw: st.DrawFn) -> bytes:
    """A valid request's JSON with an invalid UTF-8 sequence spliced into a string or between tokens."""
    raw = _dumps({**_base, "prompt": "before @@ after"})
    bad = draw(_bad_utf8)
    if draw(st.booleans()):
        return raw.replace(b"@@", bad)
    cut = draw(st.integers(min_value=0, max_value=len(raw)))
    return raw[:cut] + bad + raw[cut:]


KINDS: dict[str, tuple[st.SearchStrategy[bytes], int]] = {
    "random json": (JSON.map(_dumps), 25),
    "random keys": (st.dictionaries(_key, JSON, max_size=6).map(_dumps), 20),
    "wrong types": (_right_keys_wrong_types(), 30),
    "capability values": (_capability_values(), 35),
    "invalid utf-8": (_invalid_utf8(), 12),
    "random bytes": (st.binary(max_size=300), 12),
}


def _examples(strategy: st.SearchStrategy[bytes], n: int) -> list[bytes]:
    """Up to ``n`` examples, the same on every run (derandomized, no database, no shrinking)."""
    found: list[bytes] = []

    @hsettings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: bytes) -> None:
        found.append(value)

    collect()
    return found[:n]


def _huge() -> list[tuple[str, bytes]]:
    refs = [{"type": "image_url", "image_url": {"url": f"https://example.com/{i}.png"}} for i in range(1000)]
    long_url = "u" * 1_000_001
    frame = {"image_url": {"url": "u"}, "frame_type": "last_frame"}
    return [
        ("prompt 100k", _dumps({**_base, "prompt": "p" * 100_000})),
        ("prompt at limit", _dumps({**_base, "prompt": "q" * MAX_PROMPT_CHARS})),
        ("prompt over limit", _dumps({**_base, "prompt": "q" * (MAX_PROMPT_CHARS + 1)})),
        ("metadata 50 KiB", _dumps({**_base, "metadata": {"pad": "m" * 50 * 1024}})),
        ("metadata 12 KiB", _dumps({**_base, "metadata": {"pad": "m" * 12 * 1024}})),
        ("metadata 5k keys", _dumps({**_base, "metadata": {f"k{i}": i for i in range(5000)}})),
        ("1000 input_references", _dumps({**_base, "input_references": refs})),
        ("17 input_references", _dumps({**_base, "input_references": refs[:17]})),
        ("16 input_references", _dumps({**_base, "input_references": refs[:16]})),
        ("3 frame_images", _dumps({**_base, "frame_images": [frame] * 3})),
        ("url 1e6 + 1", _dumps({**_base, "input_references": [{"type": "image_url", "image_url": {"url": long_url}}]})),
        ("message 1 MiB + 1", _dumps({**_base, "metadata": {}, "prompt": "x"}).ljust(MAX_MESSAGE_BYTES + 1)),
        ("prompt 9000 wide chars", _dumps({**_base, "prompt": "\u732b" * 9000})),
        ("id 129 chars", _dumps({**_base, "id": "i" * 129})),
        ("provider 40 KiB", _dumps({**_base, "provider": {"pad": "v" * 40 * 1024}})),
    ]  # fmt: skip


def _valid() -> list[tuple[str, bytes, str | None]]:
    frames = [{"image_url": {"url": "https://example.com/a.png"}, "frame_type": "first_frame"}]
    return [
        ("plain", _dumps(_base), None),
        ("veo all options", _dumps({"model": "google/veo-3.1", "prompt": "dog", "duration": 8, "resolution": "1080p",
                                    "aspect_ratio": "9:16", "size": "1080x1920", "generate_audio": True, "seed": 3,
                                    "metadata": {"nested": {"a": [1, 2, {"b": None}]}}, "delivery": {"local": {}},
                                    "user": "u", "session_id": "", "trace": {"t": 1}, "provider": {"order": ["x"]}}),
         "application/json"),
        ("kling images only", _dumps({"model": "kwaivgi/kling-v2.1", "frame_images": frames}), None),
        ("mystery anything", _dumps({"model": "sim/mystery", "prompt": "m", "resolution": "13p", "duration": 77}), ""),
        ("charset", _dumps({**_base, "prompt": "\u732b \U0001f408 cat"}), "application/json; charset=utf-8"),
        ("text/plain", _dumps(_base), "text/plain"),
        ("jsonx", _dumps(_base), "application/jsonx"),
        ("nulls", _dumps({**_base, "seed": None, "resolution": None, "metadata": None}), None),
        ("sora", _dumps({"model": "openai/sora-2", "prompt": "s", "duration": 12, "resolution": "720p"}), None),
        ("refs only", _dumps({"model": "sim/fast", "input_references": [{"type": "image_url",
                                                                         "image_url": {"url": "https://e/x"}}]}), None),
    ]  # fmt: skip


def _corpus() -> list[tuple[str, bytes, str | None]]:
    out: list[tuple[str, bytes, str | None]] = []
    for kind, (strategy, n) in KINDS.items():
        out += [(kind, raw, None) for raw in _examples(strategy, n)]
    out += [(f"huge: {name}", raw, None) for name, raw in _huge()]
    out += [(f"valid: {name}", raw, ct) for name, raw, ct in _valid()]
    return out


def _body_is_valid_submit(body: dict[str, Any]) -> bool:
    """A body the provider got: no local fields, and valid by the oracle (which also checks capabilities)."""
    return not (set(body) & LOCAL_FIELDS) and _valid_request(body)


async def test_fuzzed_input_is_answered_and_never_reaches_the_provider(
    daemon: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """~150 generated messages: valid ones complete, the rest are refused and dead-lettered; the daemon lives on."""
    started = time.monotonic()
    sim.configure(validate_capabilities=True)
    corpus = _corpus()
    assert len(corpus) >= 140, len(corpus)
    expected = {f"fz-{i}": _accepts(raw, ct) for i, (_, raw, ct) in enumerate(corpus)}
    assert 20 <= sum(expected.values()) <= len(corpus) - 80, "the corpus should mix valid and invalid input"
    d = await daemon()
    for i, (_, raw, ct) in enumerate(corpus):
        await observer.publish(raw, message_id=f"fz-{i}", correlation_id=f"fz-{i}", content_type=ct)

    def answered() -> bool:
        replies = {m.correlation_id for _, m in observer.replies}
        dead = {m.correlation_id for m in observer.dead}
        return all(c in replies and (ok or c in dead) for c, ok in expected.items())

    await observer.wait(answered, timeout=90, what="a reply (and a dead letter when refused) for every message")
    # the daemon still takes work after all that
    await observer.publish({**_base, "id": "fz-after"}, correlation_id="fz-after")
    await observer.wait(lambda: observer.reply_for("fz-after"), timeout=30, what="a good request after the fuzz")
    assert observer.reply_for("fz-after")[0]["status"] == "completed"
    assert d.broker.consuming

    replies: dict[str, list[dict[str, Any]]] = {}
    for body, msg in observer.replies:
        replies.setdefault(msg.correlation_id or "", []).append(body)
    dead = Counter(m.correlation_id for m in observer.dead)
    wrong = []
    for i, (kind, raw, _) in enumerate(corpus):
        cid = f"fz-{i}"
        got = replies[cid]
        statuses = [(b["status"], (b["error"] or {}).get("code")) for b in got]
        if expected[cid]:
            ok = statuses == [("completed", None)] and dead[cid] == 0
        else:
            ok = len(got) == 1 and got[0]["status"] == "failed" and statuses[0][1] in VALIDATION_CODES
            ok = ok and dead[cid] == 1
        if not ok:
            wrong.append(f"{cid} [{kind}] valid={expected[cid]} replies={statuses} dead={dead[cid]} body={raw[:160]!r}")
    assert not wrong, "\n".join(wrong)

    # nothing validation should stop reached the provider
    stats = sim.stats()
    posts = [r for r in stats["requests"] if r["method"] == "POST" and r["path"].endswith("/videos")]
    assert {r["status"] for r in posts} == {202}, Counter(r["status"] for r in posts)
    bad_bodies = [job["body"] for job in stats["jobs"].values() if not _body_is_valid_submit(job["body"])]
    assert not bad_bodies, bad_bodies[:3]
    valid_ids = {_effective_id(corpus[int(c[3:])][1], c) for c, ok in expected.items() if ok}
    assert stats["submits"] == len(valid_ids) + 1  # + fz-after
    codes = Counter((b["error"] or {}).get("code") for body_list in replies.values() for b in body_list)
    assert "provider_rejected" not in codes, codes
    assert time.monotonic() - started < 60


# --- edge cases hypothesis is told not to generate (bugs these tests found, now fixed) ------

_DEEP_300 = json.dumps({**_base, "id": "deep", "metadata": {"a": json.loads("[" * 300 + "]" * 300)}}).encode()
_DEEP_100K = b'{"id": "deep", "model": "sim/fast", "prompt": "x", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("raw", [_DEEP_300, _DEEP_100K], ids=["depth-300", "depth-100k"])
async def test_deeply_nested_json_is_refused(daemon: Any, observer: Observer, sim: SimulatorThread, raw: bytes) -> None:
    """Expected: a failed invalid_request reply and a dead letter, like any other bad input; the daemon goes on."""
    await daemon(prefetch=1)
    await observer.publish(raw, correlation_id="deep", message_id="deep")
    await observer.publish({**_base, "id": "deep-after"}, correlation_id="deep-after")
    await observer.wait(lambda: observer.replies and observer.dead, timeout=5, what="reply and dead letter")
    assert observer.reply_for("deep")[0]["error"]["code"] == "invalid_request"
    assert observer.dead[0].headers["x-videoworker-error-code"] == "invalid_request"
    await observer.wait(lambda: observer.reply_for("deep-after"), timeout=10, what="a good request after it")
    assert sim.stats()["submits"] == 1


def _strict_json(raw: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(raw, parse_constant=refuse)


async def test_non_json_numbers_are_refused(daemon: Any, observer: Observer, sim: SimulatorThread) -> None:
    """Expected: NaN/Infinity are not JSON, so the request is refused and dead-lettered; every event is strict JSON."""
    await daemon()
    raw = b'{"id": "nan", "model": "sim/fast", "prompt": "x", "metadata": {"a": Infinity, "b": NaN}}'
    await observer.publish(raw, correlation_id="nan")
    await observer.wait(lambda: observer.reply_for("nan"), timeout=15, what="the reply")
    for _, _, msg in observer.events:
        _strict_json(msg.body)
    reply = _strict_json(observer.replies[0][1].body)
    assert reply["status"] == "failed" and reply["error"]["code"] == "invalid_request"
    await observer.wait(lambda: observer.dead, timeout=5, what="the dead letter")
    assert sim.stats()["submits"] == 0
