import json
from typing import Any
import pytest
from tests.conftest import Observer

GOOD = {"model": "sim/fast", "prompt": "a cat", "duration": 4}
CASES = {
    "deep": b'{"model": "sim/fast", "prompt": "x", "metadata": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "deep_top": b"[" * 100000 + b"]" * 100000,
    "nan_provider": b'{"model": "sim/fast", "prompt": "x", "provider": {"a": NaN}}',
    "inf_meta": b'{"model": "sim/fast", "prompt": "x", "metadata": {"a": Infinity}}',
    "surrogate_key": b'{"model": "sim/fast", "prompt": "x", "\\ud800": 1}',
    "surrogate_prompt": b'{"model": "sim/fast", "prompt": "x\\ud800"}',
    "surrogate_model": b'{"model": "sim/\\ud800", "prompt": "x"}',
    "bigint": b'{"model": "sim/fast", "prompt": "x", "seed": ' + b"9" * 5000 + b"}",
    "dup_keys": b'{"model": "sim/fast", "prompt": "x", "prompt": ""}',
    "bom": b'\xef\xbb\xbf{"model": "sim/fast", "prompt": "x"}',
    "depth900": b'{"model": "sim/fast", "prompt": "x", "metadata": {"a":' + b"[" * 900 + b"]" * 900 + b"}}",
}

@pytest.mark.parametrize("name", list(CASES))
async def test_edge(daemon: Any, observer: Observer, sim, name) -> None:
    d = await daemon(delivery_limit=3) if False else await daemon()
    await observer.publish(CASES[name], correlation_id="c", message_id="m1")
    try:
        await observer.wait(lambda: observer.replies, timeout=8, what="reply")
    except AssertionError as e:
        print(name, "NO REPLY", e)
    print(name, "REPLIES", [ (b["status"], b["error"]) for b,_ in observer.replies], "DEAD", [(m.headers) for m in observer.dead], "SUBMITS", sim.stats()["submits"])
    print(name, "raw reply", [m.body[:300] for _, m in observer.replies])
    await observer.publish({**GOOD, "id": "after"})
    await observer.wait(lambda: observer.reply_for("after"), timeout=15, what="after")
