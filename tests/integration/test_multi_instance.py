"""Several daemons on one request queue and one ledger: work is shared, and a dead peer's jobs are adopted.

* PostgreSQL (several hosts): three daemons with explicit instance ids (``node-a``,
  ``node-b``, ``node-c``), so a dead peer cannot be recognised by its pid and its jobs
  move only when their leases expire. ``node-a`` is SIGKILLed while it owns unfinished
  jobs; the others adopt them after the lease, every request ends with one final event,
  and nothing is submitted twice.
* SQLite (the default, one host): two daemons share one data dir and ledger file.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import PG_URL, DaemonProcess, Observer
from videoworker.testing.recorder import until
from videoworker_devtools.simulator import SimulatorThread

pytestmark = pytest.mark.slow

MODEL = "google/veo-3.1"
LIVE = "state NOT IN ('done', 'failed', 'submit_unknown')"
NODES = ("node-a", "node-b", "node-c")


def _prompt(request_id: str) -> str:
    return f"multi-instance prompt for {request_id}"


def _submits(sim: SimulatorThread) -> tuple[Counter[str | None], dict[str, Any]]:
    stats = sim.stats()
    return Counter(job["body"].get("prompt") for job in stats["jobs"].values()), stats["jobs"]


def _check_completed(final: dict[str, Any], sim_jobs: dict[str, Any]) -> None:
    expected = sim_jobs[final["job_id"]]["sha256"][0]
    output = final["outputs"][0]
    assert output["sha256"] == expected, final["id"]
    data = Path(urlsplit(output["location"]).path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected, f"stored bytes of {final['id']} differ"


async def _ready(*daemons: DaemonProcess, timeout: float = 30) -> None:
    """Wait until every daemon logged ``ready`` (it consumes from then on)."""

    async def all_ready() -> bool:
        for d in daemons:
            if not d.alive():
                last = d.log.read_text().strip().splitlines()[-1:] if d.log.exists() else []
                raise AssertionError(f"a daemon exited at start ({' '.join(last)}); see {d.log}")
        return all(d.log.exists() and '"event": "ready"' in d.log.read_text() for d in daemons)

    await until(all_ready, timeout, "the daemons to be ready")


async def test_postgres_three_instances_adopt_a_killed_peer(
    pg_schema: tuple[asyncpg.Pool, str], process: Any, observer: Observer, sim: SimulatorThread
) -> None:
    pool, schema = pg_schema
    jobs = f'"{schema}".jobs'
    ids = [f"multi-{i:02d}" for i in range(60)]
    sim.configure(job_seconds=[2.0, 4.0])
    ledger_url = f"{PG_URL}?schema={schema}"
    nodes = {
        name: process(env={"VIDEOWORKER_INSTANCE_ID": name}, ledger_url=ledger_url, lease_seconds=3.0) for name in NODES
    }
    owners_seen: set[str] = set()

    async def sample_owners() -> None:
        while True:
            try:
                rows = await pool.fetch(f"SELECT DISTINCT owner FROM {jobs} WHERE owner IS NOT NULL")
                owners_seen.update(r[0] for r in rows)
            except asyncpg.UndefinedTableError:
                pass
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_owners())
    try:
        for d in nodes.values():
            d.start()
        await _ready(*nodes.values())
        for request_id in ids:
            await observer.publish(
                {"id": request_id, "model": MODEL, "prompt": _prompt(request_id)}, correlation_id=request_id
            )

        # node-a owns unfinished jobs, several of them submitted and being polled: kill it mid-run
        async def a_is_busy() -> bool:
            polled = await pool.fetchval(
                f"SELECT count(*) FROM {jobs} WHERE owner = 'node-a' AND job_id IS NOT NULL AND {LIVE}"
            )
            return int(polled) >= 10

        await until(a_is_busy, 30, "node-a to own in-flight jobs")
        nodes["node-a"].kill()
        await asyncio.to_thread(nodes["node-a"].wait, 10)
        killed_at = time.time()
        stranded = {
            r["request_id"]: (r["state"], float(r["lease_until"]))
            for r in await pool.fetch(
                f"SELECT request_id, state, lease_until FROM {jobs} WHERE owner = 'node-a' AND {LIVE}"
            )
        }
        assert stranded, "node-a finished its jobs before the kill"
        assert all(until > killed_at for _, until in stranded.values()), "node-a's leases had already run out"
        submitting = {i for i, (state, _) in stranded.items() if state == "submitting"}

        # the survivors adopt node-a's rows, each only once its lease has run out
        adopted: dict[str, tuple[str, float]] = {}

        async def all_adopted() -> bool:
            rows = await pool.fetch(
                f"SELECT request_id, owner FROM {jobs} WHERE request_id = ANY($1::text[])", list(stranded)
            )
            seen_at = time.time()
            for r in rows:
                if r["owner"] != "node-a" and r["request_id"] not in adopted:
                    adopted[r["request_id"]] = (r["owner"], seen_at)
            return len(adopted) == len(stranded)

        await until(all_adopted, 30, "node-b/node-c to adopt node-a's jobs")
        adoption_seconds = max(at for _, at in adopted.values()) - killed_at
        assert {owner for owner, _ in adopted.values()} <= {"node-b", "node-c"}
        early = {i: round(stranded[i][1] - at, 2) for i, (_, at) in adopted.items() if at < stranded[i][1]}
        assert not early, f"rows adopted before node-a's lease ran out (seconds early): {early}"

        # every request ends once; a final event a killed relay had claimed waits out its
        # outbox lease (lease_seconds), as node-a is not on "this host" for its peers
        started = time.monotonic()

        async def all_final() -> bool:
            return len(observer.finals_by_id()) >= len(ids)

        await until(all_final, 75, "a final event per request")
        drain_seconds = time.monotonic() - started
        await asyncio.sleep(0.5)
        for name in ("node-b", "node-c"):
            assert nodes[name].alive(), f"{name} died on its own; see {nodes[name].log}"
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        for d in nodes.values():
            await asyncio.to_thread(d.stop)

    finals = observer.finals_by_id()
    submits, sim_jobs = _submits(sim)
    unknown = {
        i
        for i, f in finals.items()
        if any((b["error"] or {}).get("code") == "submit_outcome_unknown" for b in f.values())
    }
    states = {r["request_id"]: r["state"] for r in await pool.fetch(f"SELECT request_id, state FROM {jobs}")}
    print(
        f"\nmulti-instance: jobs={len(ids)} stranded_on_node_a={len(stranded)} submitting_at_kill={len(submitting)} "
        f"adopted_after={adoption_seconds:.1f}s unknown={len(unknown)} submits={sum(submits.values())} "
        f"owners={sorted(owners_seen)} drain={drain_seconds:.1f}s"
    )
    assert set(NODES) <= owners_seen, f"not every instance did work: {sorted(owners_seen)}"
    assert set(submits) <= {_prompt(i) for i in ids}
    assert not {i: n for i in ids if (n := submits[_prompt(i)]) > 1}, "a request was submitted twice"
    assert unknown <= submitting, f"submit_outcome_unknown outside node-a's open submits: {unknown - submitting}"
    for request_id in ids:
        assert len(finals.get(request_id, {})) == 1, (request_id, finals.get(request_id))
        (final,) = finals[request_id].values()
        assert {r["status"] for r in observer.reply_for(request_id)} == {final["status"]}, request_id
        if request_id in unknown:
            continue
        assert final["status"] == "completed", final
        _check_completed(final, sim_jobs)
    assert set(states) == set(ids)
    assert not {i: s for i, s in states.items() if s not in ("done", "submit_unknown")}
    assert not observer.dead


async def test_sqlite_two_instances_share_one_data_dir(process: Any, observer: Observer, sim: SimulatorThread) -> None:
    import sqlite3

    ids = [f"pair-{i:02d}" for i in range(20)]
    sim.configure(job_seconds=[0.5, 1.5])
    first, second = process(), process()
    assert first.settings.data_dir == second.settings.data_dir
    ledger_path = Path(urlsplit(first.settings.effective_ledger_url).path)
    # one after the other: two starting on a fresh ledger file at once may crash one of them
    # (test_sqlite_start_waits_for_a_peer_holding_the_new_ledger below)
    first.start()
    await _ready(first)
    second.start()
    await _ready(second)
    assert first.proc is not None and second.proc is not None
    instances = {f"{socket.gethostname()}-{p.proc.pid}" for p in (first, second) if p.proc is not None}
    for request_id in ids:
        await observer.publish(
            {"id": request_id, "model": MODEL, "prompt": _prompt(request_id)}, correlation_id=request_id
        )
    await observer.wait(lambda: len(observer.finals_by_id()) >= len(ids), timeout=60, what="a final event per request")
    await asyncio.sleep(0.5)
    assert first.alive() and second.alive()
    await asyncio.to_thread(first.stop)
    await asyncio.to_thread(second.stop)

    finals = observer.finals_by_id()
    submits, sim_jobs = _submits(sim)
    conn = sqlite3.connect(ledger_path, timeout=30)
    try:
        rows = dict(conn.execute("SELECT request_id, owner FROM jobs").fetchall())
        states = dict(conn.execute("SELECT request_id, state FROM jobs").fetchall())
    finally:
        conn.close()
    print(f"\nsqlite pair: jobs={len(ids)} per instance={sorted(Counter(rows.values()).values())}")
    assert set(rows.values()) == instances, "both instances should have claimed requests"
    for request_id in ids:
        assert len(finals[request_id]) == 1, finals[request_id]
        (final,) = finals[request_id].values()
        assert final["status"] == "completed", final
        assert submits[_prompt(request_id)] == 1, request_id
        _check_completed(final, sim_jobs)
        assert {r["status"] for r in observer.reply_for(request_id)} == {"completed"}
    assert set(states.values()) == {"done"}
    assert sum(submits.values()) == len(ids)
    assert not list((first.settings.data_dir / "tmp").glob("*.part"))


async def test_sqlite_start_waits_for_a_peer_holding_the_new_ledger(process: Any) -> None:
    """A daemon starting while a peer creates the (not yet WAL) ledger file waits for it instead of crashing.

    Two instances started at the same instant on a fresh data dir hit this about one
    time in three: the loser exits with ``sqlite3.OperationalError: database is locked``
    from ``PRAGMA journal_mode=WAL``. Here the peer is this test, holding ``BEGIN
    IMMEDIATE`` (what a peer's schema creation holds) for 1.5 s, so the race is certain.
    """
    import sqlite3

    daemon = process()
    path = Path(urlsplit(daemon.settings.effective_ledger_url).path)
    path.parent.mkdir(parents=True, exist_ok=True)
    peer = sqlite3.connect(path, isolation_level=None)
    try:
        peer.execute("BEGIN IMMEDIATE")
        peer.execute("CREATE TABLE IF NOT EXISTS peer_was_here (x)")
        daemon.start()
        await asyncio.sleep(1.5)
        peer.execute("COMMIT")
    finally:
        peer.close()
    await _ready(daemon)
