"""Unit tests for videoworker.core.polling: where the poll planner places polls, and what it keeps."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videoworker.core.polling import MAX_MODELS, MIN_SAMPLES, WINDOW, PollPlanner

durations = st.floats(min_value=0.1, max_value=20_000, allow_nan=False, allow_infinity=False)


@st.composite
def planners(draw: st.DrawFn) -> PollPlanner:
    shortest = draw(st.floats(min_value=0.01, max_value=120, allow_nan=False))
    longest = shortest * draw(st.floats(min_value=1, max_value=200, allow_nan=False))
    jitter = draw(st.floats(min_value=0, max_value=0.9, allow_nan=False))
    planner = PollPlanner(shortest, longest, jitter=jitter)
    for seconds in draw(st.lists(durations, max_size=3 * MIN_SAMPLES)):
        planner.learn("m", seconds, lower=seconds * draw(st.floats(0, 1)))
    return planner


def _learned(shortest: float, longest: float, samples: list[float], jitter: float = 0.0) -> PollPlanner:
    planner = PollPlanner(shortest, longest, jitter=jitter)
    for seconds in samples:
        planner.learn("m", seconds, lower=seconds)  # exact durations: the window is their percentiles
    return planner


def _replay(planner: PollPlanner, job: float) -> tuple[int, float]:
    """Poll one job that ends ``job`` seconds after submit: (polls, delay from its end to the poll that saw it)."""
    t, polls, running_at = 0.0, 0, None
    while t < job:
        if t > 0:
            running_at = t
        t += planner.next_gap("m", t, polls)
        polls += 1
    planner.learn("m", t, lower=running_at)
    return polls, t - job


@settings(max_examples=500, deadline=None)
@given(
    planner=planners(),
    model=st.sampled_from(["m", "never-seen"]),
    elapsed=st.floats(min_value=0, max_value=100_000, allow_nan=False),
    polls=st.integers(min_value=0, max_value=100_000),
)
def test_gaps_stay_within_the_intervals_once_a_job_may_be_done(
    planner: PollPlanner, model: str, elapsed: float, polls: int
) -> None:
    gap = planner.next_gap(model, elapsed, polls)
    assert gap >= planner.shortest
    window = planner.window(model)
    if window is None or elapsed >= window[0]:
        assert gap <= planner.longest + 1e-9
    else:  # before the window opens: one wait, to (about) its start, never past its end
        assert elapsed + gap <= window[1] + planner.longest


@settings(max_examples=300, deadline=None)
@given(
    planner=planners(),
    elapsed=st.floats(min_value=0, max_value=100_000, allow_nan=False),
    polls=st.integers(min_value=0, max_value=1000),
    retry_after=st.floats(min_value=0, max_value=100_000, allow_nan=False),
)
def test_retry_after_larger_than_the_gap_wins(
    planner: PollPlanner, elapsed: float, polls: int, retry_after: float
) -> None:
    gap = planner.next_gap("m", elapsed, polls, retry_after=retry_after)
    assert gap >= retry_after
    assert gap >= planner.shortest


def test_retry_after_beyond_the_longest_gap_is_honoured() -> None:
    assert PollPlanner(1, 10, jitter=0).next_gap("m", 0, 0, retry_after=120) == 120


def test_an_unknown_model_backs_off_from_the_shortest_to_the_longest_gap() -> None:
    planner = PollPlanner(2, 5, jitter=0)
    assert [planner.next_gap("unseen", 0, polls) for polls in range(5)] == [2, 3, 4.5, 5, 5]


def test_the_window_needs_enough_samples() -> None:
    planner = PollPlanner(2, 5)
    for _ in range(MIN_SAMPLES - 1):
        planner.learn("m", 20, lower=20)
    assert planner.window("m") is None
    planner.learn("m", 20, lower=20)
    assert planner.window("m") == (20, 20)


def test_a_finished_job_counts_as_the_middle_of_when_it_could_have_ended() -> None:
    planner = PollPlanner(1, 60)
    assert planner.expected("m") is None
    planner.learn("m", 30, lower=20)
    planner.learn("m", 40)  # never seen running: ended somewhere in [0, 40]
    assert planner.expected("m") == pytest.approx((25 + 20) / 2)
    assert planner.expected("other") is None


def test_polls_wait_for_the_window_then_follow_a_grid_across_it() -> None:
    planner = _learned(2, 5, [20 + i / 10 for i in range(101)])  # 20–30 s
    low, high = planner.window("m")  # type: ignore[misc]
    assert (low, high) == (pytest.approx(20.5), pytest.approx(29.5))
    step = (high - low) / 3
    first = planner.next_gap("m", 0, 0)
    assert first == pytest.approx(low)  # one wait, longer than poll_max_interval: nothing ends sooner
    times = [first]
    while times[-1] < high:
        times.append(times[-1] + planner.next_gap("m", times[-1], len(times)))
    assert [b - a for a, b in itertools.pairwise(times)] == [pytest.approx(step)] * (len(times) - 1)


def test_the_step_is_bounded_by_both_settings() -> None:
    wide = _learned(2, 5, [10, 10, 10, 10, 10, 100, 100, 100, 100, 100])
    assert wide.next_gap("m", 10, 1) == pytest.approx(0.75 * 5)  # dense, however wide the window
    narrow = _learned(2, 5, [20.0] * 5 + [20.3] * 5)
    assert narrow.next_gap("m", 20.0, 1) == pytest.approx(2)  # never closer than poll_interval


def test_jobs_running_late_back_off_to_the_longest_gap() -> None:
    planner = _learned(2, 60, [10.0] * 10)
    gaps = [planner.next_gap("m", elapsed, 5) for elapsed in range(11, 400, 10)]
    assert gaps[0] == 2
    assert all(a <= b for a, b in itertools.pairwise(gaps))
    assert gaps[-1] == 60


def test_jitter_spreads_polls_of_jobs_submitted_together() -> None:
    planner = _learned(2, 5, [20 + i / 10 for i in range(101)], jitter=0.2)
    firsts = [planner.next_gap("m", 0, 0) for _ in range(200)]
    assert len(set(firsts)) > 150
    step = 3.0
    assert all(20.5 - 0.1 * step - 1e-9 <= t <= 20.5 + 0.1 * step + 1e-9 for t in firsts)


def test_fewer_polls_and_sooner_detection_than_the_bare_backoff() -> None:
    """The claim of issue 9, on a virtual clock: jobs of 20–30 s, polls between 2 and 5 s."""
    random.seed(3)
    jobs = [random.uniform(20, 30) for _ in range(1200)]
    planner = PollPlanner(2, 5)
    ours = [_replay(planner, job) for job in jobs][200:]  # the first 200 teach it

    def backoff(job: float) -> tuple[int, float]:
        t, gap, polls = 0.0, 2.0, 0
        while t < job:
            t, gap, polls = t + gap, min(gap * 1.5, 5), polls + 1
        return polls, t - job

    floor = [backoff(job) for job in jobs[200:]]
    assert statistics.mean(p for p, _ in ours) <= 0.8 * statistics.mean(p for p, _ in floor)
    assert statistics.median(d for _, d in ours) <= 0.8 * statistics.median(d for _, d in floor)


def test_a_model_that_becomes_faster_is_followed() -> None:
    random.seed(4)
    planner = PollPlanner(2, 5)
    for _ in range(300):
        _replay(planner, random.uniform(40, 60))
    assert planner.window("m")[0] > 35  # type: ignore[index]
    delays = [_replay(planner, random.uniform(10, 15))[1] for _ in range(400)]
    assert planner.window("m")[0] < 15  # type: ignore[index]
    assert statistics.median(delays[-100:]) < 3  # found near their end again, not at the old window


def test_after_a_burst_the_window_is_not_only_its_longest_jobs() -> None:
    """Jobs submitted together finish shortest first: the sample must not keep just the last ones."""
    planner = PollPlanner(2, 5)
    rng = random.Random(5)
    for seconds in sorted(rng.uniform(20, 30) for _ in range(2 * WINDOW)):
        planner.learn("m", seconds, lower=seconds)
    low, high = planner.window("m")  # type: ignore[misc]
    assert low < 23 and high > 29


def test_durations_are_kept_per_model_and_bounded() -> None:
    random.seed(6)
    planner = PollPlanner(2, 5)
    for _ in range(WINDOW):
        planner.learn("m", 100.0, lower=100.0)
    for _ in range(5 * WINDOW):
        planner.learn("m", 10.0, lower=10.0)
    assert planner.window("m") == (10.0, 10.0)  # the old ones were replaced (each survives ~WINDOW jobs)
    for i in range(MAX_MODELS + 10):
        planner.learn(f"model-{i}", 5.0)
    assert planner.expected("model-0") is None
    assert planner.expected(f"model-{MAX_MODELS + 9}") == 2.5


def test_what_was_learned_survives_a_restart(tmp_path: Path) -> None:
    before = _learned(2, 5, [20 + i for i in range(11)])
    path = tmp_path / "poll-durations.json"
    before.save(path)
    after = PollPlanner(2, 5)
    assert after.load(path) == 1
    assert after.window("m") == before.window("m")
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, then renamed


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"models": {"m": ["x"]}}),
        json.dumps({"models": ["m"]}),
        json.dumps([1, 2]),
        json.dumps({"version": 1}),
        '{"models": {"m": [1' + "0" * 400 + "]}}",  # a number too big for a float: OverflowError
        '{"models": {"m": ' + "[" * 100_000 + "]" * 100_000 + "}}",  # nested too deep: RecursionError
    ],
    ids=["text", "strings", "list", "not-object", "no-models", "overflow", "deep"],
)
def test_a_damaged_file_is_ignored(tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "poll-durations.json"
    path.write_text(content)
    planner = PollPlanner(2, 5)
    assert planner.load(path) == 0
    assert planner.window("m") is None
    assert "ignoring the saved poll durations" in capsys.readouterr().out


def test_a_missing_file_is_a_cold_start(tmp_path: Path) -> None:
    assert PollPlanner(2, 5).load(tmp_path / "absent.json") == 0


def test_loaded_values_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "poll-durations.json"
    models = {f"m{i}": [*([12.0] * (WINDOW + 5)), -1.0, 1e9, float("nan")] for i in range(MAX_MODELS + 3)}
    models["x" * 300] = [12.0] * 10
    path.write_text(json.dumps({"version": 1, "models": models}))
    planner = PollPlanner(2, 5)
    assert planner.load(path) == MAX_MODELS - 1  # the last MAX_MODELS, less the over-long id
    assert planner.window("x" * 300) is None
    assert planner.window(f"m{MAX_MODELS + 2}") == (12.0, 12.0)


def test_with_callbacks_polls_reconcile_after_the_expected_end() -> None:
    planner = PollPlanner(2.0, 5.0, jitter=0.0, reconcile=120.0)
    assert planner.next_gap("m", 0, 0) == 120.0  # nothing learned: the callback is the fast path
    planner.learn("m", 40.0, lower=40.0)
    assert planner.next_gap("m", 0, 0) == pytest.approx(52.0)  # 1.25 × expected + the shortest gap
    assert planner.next_gap("m", 60, 1) == 120.0  # past it: one poll per reconcile_interval
    assert planner.next_gap("m", 60, 1, retry_after=200) == 200.0


def test_a_failed_save_is_logged_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _learned(2, 5, [20.0] * 5).save(tmp_path / "missing-folder" / "poll-durations.json")
    assert "could not save the learned poll durations" in capsys.readouterr().out


async def test_a_failed_start_does_not_erase_what_was_learned(tmp_path: Path) -> None:
    """An engine that never started (ledger or broker down at start) leaves the saved file alone."""
    from videoworker.config import load_settings
    from videoworker.core.engine import Engine

    path = tmp_path / "poll-durations.json"
    _learned(2, 5, [20.0] * 10).save(path)
    saved = path.read_text()
    settings = load_settings(None, openrouter_api_key="k", data_dir=tmp_path)
    engine = Engine(settings, None, None, None)  # type: ignore[arg-type]
    await engine.stop(0.1)
    assert path.read_text() == saved
