"""SIGKILL chaos: a daemon killed at random moments, over and over, loses nothing and pays nothing twice.

120 requests are published over the chaos window while a subprocess daemon is killed
with SIGKILL at seeded random moments (1–4 s apart) and restarted straight away each
time. The last one runs to quiescence. Then, per request id:

* exactly one distinct final event (duplicates of the same ``message_id`` are allowed:
  events are at least once; two different final statuses are not);
* a completed job's stored bytes hash to what the simulator generated for that job;
* at most one submit (simulator jobs are mapped back to ids by their unique prompt);
* the only failure allowed is ``submit_outcome_unknown`` (a kill inside the open
  window), and there are no more of those than kills;
* no ``.part`` download is left under ``<data_dir>/tmp``, every ledger row is terminal, and
  every outbox row is published, also those a killed relay had leased (two bugs this test
  found, each now pinned by a deterministic test below).

``pytest -s`` prints one summary line with the figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import AMQP_URL, Observer
from tests.tcpproxy import TcpProxy
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread

pytestmark = pytest.mark.slow

SEED = 20240611
JOBS = 120
KILLS = 10  # at least 6
MODEL = "google/veo-3.1"
DRAIN_TIMEOUT = 75.0  # generous: the drain takes about 1.5 s
TERMINAL = ("done", "failed", "submit_unknown")


def _prompt(request_id: str) -> str:
    return f"chaos prompt for {request_id}"


def _ledger_rows(path: Path) -> tuple[dict[str, str], list[str | None]]:
    """``({request id: state}, [lease owner of each unsent outbox row])``, read straight from the SQLite file."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        states = dict(conn.execute("SELECT request_id, state FROM jobs").fetchall())
        pending = [r[0] for r in conn.execute("SELECT lease_owner FROM outbox WHERE sent_at IS NULL")]
    finally:
        conn.close()
    return states, pending


def _adoptions(log: Path) -> list[tuple[str, str]]:
    """``(request id, state)`` of every job a daemon adopted, from its JSON log."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if '"adopted job"' in line:
            entry = json.loads(line)
            found.append((entry["request_id"], entry["state"]))
    return found


async def test_sigkill_chaos(process: Any, observer: Observer, sim: SimulatorThread) -> None:
    rng = random.Random(SEED)
    sim.configure(job_seconds=[0.5, 2.0], seed=SEED)
    ids = [f"chaos-{i:03d}" for i in range(JOBS)]
    gaps = [rng.uniform(1.0, 4.0) for _ in range(KILLS)]
    window = sum(gaps)
    # requests arrive over the whole chaos window, so kills land on every step, intake included
    arrivals = sorted(rng.uniform(0.0, window) for _ in ids)

    daemon = process()
    daemon.start()
    lives = [daemon]
    started = time.monotonic()

    async def publish_all() -> None:
        for request_id, at in zip(ids, arrivals, strict=True):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await observer.publish(
                {"id": request_id, "model": MODEL, "prompt": _prompt(request_id)}, correlation_id=request_id
            )

    publisher = asyncio.create_task(publish_all())
    kills = 0
    try:
        for gap in gaps:
            await asyncio.sleep(gap)
            assert daemon.alive(), f"the daemon died on its own; see {daemon.log}"
            daemon.kill()
            await asyncio.to_thread(daemon.wait, 10)
            kills += 1
            daemon = process()
            daemon.start()
            lives.append(daemon)
        await publisher
    finally:
        publisher.cancel()

    # the last daemon runs to quiescence: every id answered, then nothing left in the outbox
    drain_started = time.monotonic()
    deadline = drain_started + DRAIN_TIMEOUT
    ledger_path = Path(urlsplit(daemon.settings.effective_ledger_url).path)
    dead = {f"{socket.gethostname()}-{d.proc.pid}" for d in lives[:-1] if d.proc is not None}
    drain_seconds = quiet_seconds = float("nan")
    while time.monotonic() < deadline:
        if len(observer.finals_by_id()) >= JOBS:
            drain_seconds = time.monotonic() - drain_started
            break
        await asyncio.sleep(0.1)
    while time.monotonic() < deadline:
        if not _ledger_rows(ledger_path)[1]:
            quiet_seconds = time.monotonic() - drain_started
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # late duplicates (at least once) still count below
    assert daemon.alive(), f"the last daemon died on its own; see {daemon.log}"
    await asyncio.to_thread(daemon.stop)

    finals = observer.finals_by_id()
    states, pending = _ledger_rows(ledger_path)
    stats = sim.stats()
    submits = Counter(job["body"].get("prompt") for job in stats["jobs"].values())
    by_prompt = {_prompt(i): i for i in ids}
    strangers = [p for p in submits if p not in by_prompt]
    lost = [i for i in ids if i not in finals]
    conflicting = {i: sorted(f) for i, f in finals.items() if len(f) > 1}
    duplicate_submits = {i: submits[_prompt(i)] for i in ids if submits[_prompt(i)] > 1}
    unknown = [
        i
        for i, f in finals.items()
        if any((b.get("error") or {}).get("code") == "submit_outcome_unknown" for b in f.values())
    ]
    # jobs a restart took over from its killed predecessor: shows the kills landed on work in flight
    adoptions = [_adoptions(d.log) for d in lives]
    adopted = sum(len(a) for a in adoptions)
    part_leaks = len(set((daemon.settings.data_dir / "tmp").rglob("*.part")))
    print(
        f"\nchaos: jobs={JOBS} kills={kills} adopted_after_kills={adopted} lost={len(lost)} "
        f"duplicate_submits={len(duplicate_submits)} unknown={len(unknown)} conflicting_finals={len(conflicting)} "
        f"submits={stats['submits']} drain={drain_seconds:.1f}s quiet={quiet_seconds:.1f}s "
        f"outbox_held_by_killed={sum(o in dead for o in pending)} part_leaks={part_leaks} "
        f"total={time.monotonic() - started:.1f}s"
    )

    assert kills >= 6
    assert not strangers, f"submits that match no request: {strangers[:5]}"
    assert not lost, f"{len(lost)} request(s) never got a final event: {lost[:10]}"
    assert not conflicting, f"requests with more than one distinct final event: {conflicting}"
    assert not duplicate_submits, f"paid twice: {duplicate_submits}"
    # a kill during a submit burst may leave every submit in flight in doubt (the documented limit:
    # up to max_concurrent_submits per kill); reported unknown, never paid twice (checked above)
    bound = kills * daemon.settings.max_concurrent_submits
    assert len(unknown) <= bound, f"{len(unknown)} submit_outcome_unknown for {kills} kills: {unknown}"

    for request_id in ids:
        (final,) = finals[request_id].values()
        replies = {r["status"] for r in observer.reply_for(request_id)}
        assert replies == {final["status"]}, (request_id, replies)
        if final["status"] == "failed":
            assert final["error"]["code"] == "submit_outcome_unknown", final
            continue
        assert final["status"] == "completed", final
        assert submits[_prompt(request_id)] == 1, request_id
        expected = stats["jobs"][final["job_id"]]["sha256"][0]
        output = final["outputs"][0]
        assert output["sha256"] == expected, request_id
        data = Path(urlsplit(output["location"]).path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected, f"stored bytes of {request_id} differ"

    assert set(states) == set(ids)
    assert not {i: s for i, s in states.items() if s not in TERMINAL}, "rows left unfinished in the ledger"
    assert not pending, f"{len(pending)} outbox row(s) never published (lease owners {set(pending)})"
    leftovers = sorted(p.name for p in (daemon.settings.data_dir / "tmp").rglob("*.part"))
    assert not leftovers, f".part files left behind: {leftovers}"
    assert not observer.dead, "a request was dead-lettered"


def _outbox_final(path: Path, request_id: str) -> tuple[str | None, list[tuple[str | None, float | None]]]:
    """``(job state, [(lease_owner, sent_at)] of its final-event outbox rows)``."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        row = conn.execute("SELECT state FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
        rows = conn.execute(
            "SELECT lease_owner, sent_at FROM outbox WHERE message_id = ?", (f"{request_id}:completed",)
        ).fetchall()
    except sqlite3.OperationalError:  # the daemon has not created the schema yet
        return None, []
    finally:
        conn.close()
    return (row[0] if row else None), rows


async def test_killed_relay_does_not_hold_the_final_event_for_a_minute(
    process: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Killed while publishing a job's final event: the restart answers promptly, as it adopts jobs at once.

    The first daemon reaches RabbitMQ through a proxy that is blackholed once the job is
    submitted, so its relay claims the final event (an outbox lease) and hangs on the
    confirm. It is SIGKILLed there. The restarted daemon (direct connection) adopts the
    dead process's jobs at once (``dead_local_owners``); its outbox rows should be too.
    """
    sim.configure(job_seconds=[1.5, 2.0])
    host, port = urlsplit(AMQP_URL).hostname or "127.0.0.1", urlsplit(AMQP_URL).port or 5672
    async with TcpProxy(host, port) as proxy:
        proxied = AMQP_URL.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
        first = process(amqp_url=proxied, lease_seconds=3.0)
        first.start()
        await observer.publish({"id": "relay-1", "model": MODEL, "prompt": "relay kill"}, correlation_id="r1")
        await observer.wait(
            lambda: any(k == "video.submitted" for k, _, _ in observer.events), timeout=30, what="the submitted event"
        )
        proxy.blackhole()
        ledger_path = Path(urlsplit(first.settings.effective_ledger_url).path)

        def final_claimed() -> bool:
            state, rows = _outbox_final(ledger_path, "relay-1")
            return state == "done" and bool(rows) and all(o is not None and sent is None for o, sent in rows)

        await observer.wait(final_claimed, timeout=30, what="the relay to claim the final event")
        first.kill()
        await asyncio.to_thread(first.wait, 10)
        proxy.heal()
        proxy.reset()
    restarted = time.monotonic()
    second = process(lease_seconds=3.0)
    second.start()
    try:
        await observer.wait(lambda: observer.reply_for("relay-1"), timeout=20, what="the final reply after the restart")
    finally:
        print(f"\nrelay kill: final reply after {time.monotonic() - restarted:.1f}s")
    assert observer.reply_for("relay-1")[0]["status"] == "completed"


async def test_restart_after_stored_commit_removes_the_download(
    process: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """A job killed right after its ``stored`` commit is finished by the restart, leaving no ``.part`` behind.

    There is no crash point between the ``stored`` commit and the deletion of the
    download, so the test builds that instant's state: a daemon killed at
    ``after_store`` (download kept, outputs placed; the poll's ``completed`` was still
    held in memory, so the ledger says ``submitted`` or ``in_progress``), then the
    ``stored`` commit an earlier version made there, written into the ledger by hand.
    """
    first = process(env={"VIDEOWORKER_CRASHPOINT": "after_store"})
    first.start()
    await observer.publish({"id": "leak-1", "model": MODEL, "prompt": "leak"}, correlation_id="leak")
    await asyncio.to_thread(first.wait, 30)
    tmp = first.settings.data_dir / "tmp"
    (part,) = tmp.glob("leak-1/*.part")
    video = first.settings.data_dir / "videos" / "leak-1" / "0.mp4"
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    ledger_path = Path(urlsplit(first.settings.effective_ledger_url).path)
    conn = sqlite3.connect(ledger_path, timeout=30)
    try:
        (state, raw) = conn.execute("SELECT state, data FROM jobs WHERE request_id = 'leak-1'").fetchone()
        assert state in ("submitted", "in_progress")
        data = json.loads(raw)
        uri = video.resolve().as_uri()
        data["outputs"] = [
            {
                "index": 0,
                "location": uri,
                "locations": {"local": uri},
                "content_type": "video/mp4",
                "bytes": video.stat().st_size,
                "sha256": digest,
            }
        ]
        with conn:
            conn.execute("UPDATE jobs SET state = 'stored', data = ? WHERE request_id = 'leak-1'", (json.dumps(data),))
    finally:
        conn.close()

    second = process()
    second.start()
    await observer.wait(lambda: observer.reply_for("leak-1"), timeout=30, what="the final reply")
    assert observer.reply_for("leak-1")[0]["status"] == "completed"
    await asyncio.to_thread(second.stop)
    assert not part.exists(), f"{part.name} left behind in {tmp}"
    assert not part.parent.exists(), "the job's temp folder outlived the job"


async def test_restart_after_the_final_commit_removes_the_download(
    process: Any, observer: Observer, sim: SimulatorThread
) -> None:
    """Killed between the final commit and deleting the download: nobody runs a finished job, so the start sweeps it.

    Built like the test above: killed at ``after_store``, then the row set to ``done`` by
    hand, the state a kill right after the final commit leaves (seen once in the chaos test).
    """
    first = process(env={"VIDEOWORKER_CRASHPOINT": "after_store"})
    first.start()
    await observer.publish({"id": "leak-2", "model": MODEL, "prompt": "leak after done"})
    await asyncio.to_thread(first.wait, 30)
    (part,) = (first.settings.data_dir / "tmp").glob("leak-2/*.part")
    conn = sqlite3.connect(Path(urlsplit(first.settings.effective_ledger_url).path), timeout=30)
    try:
        with conn:
            conn.execute("UPDATE jobs SET state = 'done', owner = NULL WHERE request_id = 'leak-2'")
    finally:
        conn.close()
    second = process()
    second.start()
    await until(lambda: not part.parent.exists(), 20, "the finished job's temp folder removed at start")
    await asyncio.to_thread(second.stop)
