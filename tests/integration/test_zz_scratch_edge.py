import asyncio, json
from typing import Any
import pytest
from tests.conftest import Observer

GOOD = {"model": "sim/fast", "prompt": "a cat", "duration": 4}
DEEP = json.dumps({"model": "sim/fast", "prompt": "x", "metadata": {"a": json.loads("[" * 300 + "]" * 300)}}).encode()

async def test_deep_stuck(daemon: Any, observer: Observer, sim) -> None:
    d = await daemon(prefetch=2)
    await observer.publish(DEEP, correlation_id="c1", message_id="m1")
    await observer.publish(DEEP, correlation_id="c2", message_id="m2")
    await asyncio.sleep(1)
    await observer.publish({**GOOD, "id": "after"})
    try:
        await observer.wait(lambda: observer.reply_for("after"), timeout=10, what="after")
        print("AFTER OK")
    except AssertionError as e:
        print("AFTER STUCK", e)
    print("REPLIES", [(b["id"], b["status"]) for b,_ in observer.replies], "DEAD", len(observer.dead))
    print(await d.broker.queue_stats(d.settings.request_queue))

async def test_inf(daemon: Any, observer: Observer, sim) -> None:
    await daemon()
    await observer.publish(b'{"model": "sim/fast", "prompt": "x", "metadata": {"a": Infinity, "b": NaN}}', correlation_id="c", message_id="m1")
    await observer.wait(lambda: observer.replies, timeout=8, what="reply")
    body = observer.replies[0][1].body
    print("RAW", body[body.index(b'"metadata"'):][:80])
    try:
        json.loads(body, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        print("STRICT OK")
    except ValueError as e:
        print("STRICT FAIL", e)
    print([j["body"] for j in sim.stats()["jobs"].values()])
