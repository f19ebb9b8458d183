"""Tests of the OpenRouter video API simulator itself (videoworker_devtools.simulator).

One simulator thread serves the whole module; every test starts from a reset simulator
with fast jobs (0.1-0.2 s) and no faults, then turns on the knobs it needs. Waits are
loops with deadlines, never a sleep that hopes the job is done.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from videoworker_devtools.simulator import SimConfig, SimulatorThread, bound_port, mp4, serve
from videoworker_devtools.simulator.state import REQUEST_LOG_SIZE, SimState

KEY = "test-key"
# Every knob, reapplied before each test so no test inherits another's faults.
BASELINE: dict[str, Any] = SimConfig(api_key=KEY, job_seconds=(0.1, 0.2), seed=1234).to_json()
JOB_ID = re.compile(r"^gen-vid-\d+-[A-Za-z0-9]{20}$")
GENERATION_ID = re.compile(r"^gen-\d+-[A-Za-z0-9]+$")


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(**BASELINE)) as sim:
        yield sim


@pytest.fixture
def sim(server: SimulatorThread) -> SimulatorThread:
    server.configure(**BASELINE)
    server.reset()
    return server


@pytest.fixture
def api(sim: SimulatorThread) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=10.0) as client:
        yield client


def wait_for(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last result {result!r})")
        time.sleep(interval)


def submit(api: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = api.post("/videos", json={"model": "sim/fast", "prompt": "a cat", **body})
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def wait_status(api: httpx.Client, job_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view: dict[str, Any] = api.get(f"/videos/{job_id}").json()
        return view if view["status"] == status else None

    result: dict[str, Any] = wait_for(check, timeout)
    return result


def stream_body(api: httpx.Client, url: str) -> tuple[int, int, httpx.HTTPError | None]:
    """Download ``url``: (announced Content-Length, bytes received, the error that cut it)."""
    announced = received = 0
    try:
        with api.stream("GET", url) as answer:
            announced = int(answer.headers["content-length"])
            for chunk in answer.iter_bytes():
                received += len(chunk)
    except httpx.HTTPError as exc:
        return announced, received, exc
    return announced, received, None


def completed_job(api: httpx.Client, **body: Any) -> dict[str, Any]:
    return wait_status(api, submit(api, **body)["id"], "completed")


class TestAuth:
    """The video endpoints need the key; the model lists do not."""

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
    def test_videos_endpoints_refuse_missing_or_wrong_key(self, sim: SimulatorThread, headers: dict[str, str]) -> None:
        """Submit, poll and content answer 401 with an OpenRouter error body."""
        with httpx.Client(base_url=sim.base_url, headers=headers) as client:
            answers = [
                client.post("/videos", json={"model": "sim/fast", "prompt": "x"}),
                client.get("/videos/gen-vid-1-abc"),
                client.get("/videos/gen-vid-1-abc/content"),
            ]
        for answer in answers:
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == 401
        assert sim.stats()["submits"] == 0

    def test_model_lists_need_no_key(self, sim: SimulatorThread) -> None:
        """Both model endpoints answer 200 without Authorization."""
        with httpx.Client(base_url=sim.base_url) as client:
            assert client.get("/videos/models").status_code == 200
            assert client.get("/models").status_code == 200


class TestLifecycle:
    """A job goes pending → in_progress → completed and its videos download."""

    def test_submit_poll_download(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """The happy path returns documented shapes and a full MP4."""
        answer = api.post("/videos", json={"model": "sim/fast", "prompt": "a cat", "duration": 4})
        assert answer.status_code == 202
        job = answer.json()
        assert JOB_ID.match(job["id"])
        assert job["status"] == "pending"
        assert job["polling_url"] == f"{sim.base_url}/videos/{job['id']}"
        first = api.get(job["polling_url"]).json()
        assert first["status"] in ("pending", "in_progress")
        assert "unsigned_urls" not in first
        done = wait_status(api, job["id"], "completed")
        assert GENERATION_ID.match(done["generation_id"])
        assert done["unsigned_urls"] == [f"{sim.base_url}/videos/{job['id']}/content?index=0"]
        assert done["usage"] == {"cost": pytest.approx(0.04), "is_byok": False}
        video = api.get(done["unsigned_urls"][0])
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert int(video.headers["content-length"]) == len(video.content)
        assert video.content[4:8] == b"ftyp"

    def test_status_goes_through_in_progress(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A long enough job is seen in_progress before it completes."""
        sim.configure(job_seconds=[3.0, 3.0])
        job = submit(api)
        wait_status(api, job["id"], "in_progress", timeout=2.5)

    def test_every_job_and_output_has_its_own_bytes(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """Two jobs with two outputs each give four different videos, hashed in stats."""
        sim.configure(outputs=2)
        jobs = [completed_job(api), completed_job(api)]
        videos = {}
        for job in jobs:
            assert len(job["unsigned_urls"]) == 2
            for url in job["unsigned_urls"]:
                videos[url] = api.get(url).content
        assert len(set(videos.values())) == 4
        stats = sim.stats()
        for job in jobs:
            recorded = stats["jobs"][job["id"]]
            assert recorded["status"] == "completed"
            assert recorded["bytes"] == [len(videos[url]) for url in job["unsigned_urls"]]
            assert len(recorded["sha256"]) == 2

    def test_content_errors(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """Bad index → 400; out of range, unknown job or not completed → 404."""
        job = completed_job(api)
        assert api.get(f"/videos/{job['id']}/content").status_code == 200  # index defaults to 0
        assert api.get(f"/videos/{job['id']}/content", params={"index": "x"}).status_code == 400
        assert api.get(f"/videos/{job['id']}/content", params={"index": "-1"}).status_code == 400
        assert api.get(f"/videos/{job['id']}/content", params={"index": 1}).status_code == 404
        assert api.get("/videos/gen-vid-0-nope/content").status_code == 404
        sim.configure(job_seconds=[30.0, 30.0])
        pending = submit(api)
        assert api.get(f"/videos/{pending['id']}/content").status_code == 404

    def test_unknown_job_is_404(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """Polling an id the simulator never issued answers a JSON 404."""
        answer = api.get("/videos/gen-vid-0-unknown")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == 404

    def test_stats_record_the_submitted_body(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """The stats keep each job's body and every API request in the log."""
        job = submit(api, seed=7, session_id="s-1")
        stats = sim.stats()
        assert stats["jobs"][job["id"]]["body"] == {
            "model": "sim/fast",
            "prompt": "a cat",
            "seed": 7,
            "session_id": "s-1",
        }
        assert stats["requests"][-1]["method"] == "POST"
        assert stats["requests"][-1]["path"] == "/api/v1/videos"
        assert stats["requests"][-1]["status"] == 202


class TestValidation:
    """Submits are checked about as little as the real API checks them."""

    @pytest.mark.parametrize(
        "body",
        [
            ["not", "an", "object"],
            {"prompt": "no model"},
            {"model": "nobody/nothing", "prompt": "x"},
            {"model": "openai/gpt-4o", "prompt": "a text model"},
            {"model": "sim/fast"},
        ],
    )
    def test_bad_submits_are_400_and_create_nothing(self, sim: SimulatorThread, api: httpx.Client, body: Any) -> None:
        """Each bad body answers 400 with an error message and no job."""
        answer = api.post("/videos", json=body)
        assert answer.status_code == 400
        assert answer.json()["error"]["message"]
        assert sim.stats()["submits"] == 0

    def test_invalid_json_is_400(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A body that is not JSON at all answers 400."""
        answer = api.post("/videos", content=b"{nope", headers={"Content-Type": "application/json"})
        assert answer.status_code == 400

    def test_image_only_generation_is_accepted(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A first frame image replaces the prompt."""
        frame = {
            "type": "image_url",
            "image_url": {"url": "https://x/a.png"},
            "frame_type": "first_frame",
        }
        answer = api.post("/videos", json={"model": "kwaivgi/kling-v2.1", "frame_images": [frame]})
        assert answer.status_code == 202

    def test_capability_checks_are_opt_in(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """An unsupported duration passes by default and is refused with validate_capabilities."""
        body = {"model": "google/veo-3.1", "prompt": "x", "duration": 7}
        assert api.post("/videos", json=body).status_code == 202
        sim.configure(validate_capabilities=True)
        assert api.post("/videos", json=body).status_code == 400
        assert api.post("/videos", json={**body, "duration": 8}).status_code == 202
        assert api.post("/videos", json={**body, "model": "sim/mystery"}).status_code == 202


class TestModels:
    """The model catalogue endpoints."""

    def test_video_models_list(self, sim: SimulatorThread) -> None:
        """/videos/models lists the default catalogue with every VideoModel field."""
        data = httpx.get(f"{sim.base_url}/videos/models").json()["data"]
        by_id = {model["id"]: model for model in data}
        assert {"google/veo-3.1", "openai/sora-2", "kwaivgi/kling-v2.1", "sim/fast"} <= set(by_id)
        fields = {
            "id",
            "canonical_slug",
            "name",
            "created",
            "description",
            "supported_resolutions",
            "supported_aspect_ratios",
            "supported_sizes",
            "supported_durations",
            "supported_frame_images",
            "generate_audio",
            "seed",
            "allowed_passthrough_parameters",
            "pricing_skus",
        }
        for model in data:
            assert fields <= set(model)
        assert by_id["google/veo-3.1"]["supported_durations"] == [4, 6, 8]
        assert by_id["sim/fast"]["supported_durations"] == list(range(1, 21))
        unknown = [m for m in data if m["supported_resolutions"] is None]
        assert unknown and unknown[0]["supported_durations"] is None

    def test_general_models_filter(self, sim: SimulatorThread) -> None:
        """?output_modalities=video keeps video models; no filter adds the text model."""
        videos = httpx.get(f"{sim.base_url}/models", params={"output_modalities": "video"}).json()["data"]
        everything = httpx.get(f"{sim.base_url}/models").json()["data"]
        assert videos and all(m["architecture"]["output_modalities"] == ["video"] for m in videos)
        assert "openai/gpt-4o" not in {m["id"] for m in videos}
        assert "openai/gpt-4o" in {m["id"] for m in everything}
        assert len(everything) == len(videos) + 1

    def test_catalogue_is_configurable(self, sim: SimulatorThread) -> None:
        """A new catalogue set at run time is served at once."""
        sim.configure(models=[{"id": "new/model", "supported_durations": [3]}])
        data = httpx.get(f"{sim.base_url}/videos/models").json()["data"]
        assert [m["id"] for m in data] == ["new/model"]


class TestFaults:
    """Injected errors, lost answers, cut downloads and stuck jobs."""

    @pytest.mark.parametrize(("status", "retry_after", "header"), [(429, 1.0, "1"), (503, 0.5, "0.5")])
    def test_retryable_submit_errors_carry_retry_after_and_create_nothing(
        self, sim: SimulatorThread, api: httpx.Client, status: int, retry_after: float, header: str
    ) -> None:
        """429/503 on submit come before the job exists and say when to retry."""
        sim.configure(error_rate=1.0, error_statuses=[status], retry_after=retry_after)
        answer = api.post("/videos", json={"model": "sim/fast", "prompt": "x"})
        assert answer.status_code == status
        assert answer.headers["retry-after"] == header
        assert answer.json()["error"]["code"] == status
        stats = sim.stats()
        assert (stats["submits"], stats["errors_injected"], stats["jobs"]) == (0, 1, {})

    @pytest.mark.parametrize("status", [500, 502, 504])
    def test_ambiguous_5xx_submit_creates_the_job(self, sim: SimulatorThread, api: httpx.Client, status: int) -> None:
        """500/502/504 on submit answer after the job was created: it counts and completes."""
        sim.configure(error_rate=1.0, error_statuses=[status])
        answer = api.post("/videos", json={"model": "sim/fast", "prompt": "x"})
        assert answer.status_code == status
        assert "retry-after" not in answer.headers
        stats = sim.stats()
        assert stats["submits"] == 1 and stats["errors_injected"] == 1
        [job_id] = stats["jobs"]
        wait_for(lambda: sim.stats()["jobs"][job_id]["status"] == "completed")

    def test_poll_and_download_errors(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """Polls and downloads get injected errors too, and 503 carries Retry-After."""
        job = completed_job(api)
        sim.configure(error_rate=1.0, error_statuses=[503], retry_after=2)
        poll = api.get(f"/videos/{job['id']}")
        download = api.get(job["unsigned_urls"][0])
        assert (poll.status_code, download.status_code) == (503, 503)
        assert poll.headers["retry-after"] == download.headers["retry-after"] == "2"

    def test_submit_reset_creates_job_without_answer(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A reset submit loses the answer, but the job exists and counts as a submit."""
        sim.configure(submit_reset_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError):
            api.post("/videos", json={"model": "sim/fast", "prompt": "x"})
        stats = sim.stats()
        assert stats["submits"] == 1 and len(stats["jobs"]) == 1
        assert stats["requests"][-1]["status"] == 0

    def test_truncated_download(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A cut download announces the full length but delivers less, then closes."""
        job = completed_job(api)
        full = api.get(job["unsigned_urls"][0]).content
        sim.configure(truncate_rate=1.0)
        announced, received, failure = stream_body(api, job["unsigned_urls"][0])
        assert announced == len(full)
        assert 0 < received < announced
        assert isinstance(failure, httpx.RemoteProtocolError)
        assert sim.stats()["truncations"] == 1

    def test_failed_job(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A failing job ends failed with an error message and no content."""
        sim.configure(failure_rate=1.0)
        job = wait_status(api, submit(api)["id"], "failed")
        assert job["error"]
        assert "unsigned_urls" not in job
        assert api.get(f"/videos/{job['id']}/content").status_code == 404

    def test_never_finishing_job(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """A stuck job stays in_progress long after its duration has elapsed."""
        sim.configure(never_finish_rate=1.0)
        job = submit(api)
        wait_status(api, job["id"], "in_progress")
        past_duration = time.monotonic() + 0.6  # 3x the longest job
        while time.monotonic() < past_duration:
            assert api.get(f"/videos/{job['id']}").json()["status"] == "in_progress"
            time.sleep(0.05)
        assert sim.stats()["jobs"][job["id"]]["status"] == "in_progress"

    def test_latency(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """Every API answer is delayed by the configured latency."""
        sim.configure(latency=[0.2, 0.2])
        started = time.monotonic()
        api.get("/videos/models")
        assert time.monotonic() - started >= 0.2

    def test_seed_makes_faults_reproducible(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """After a reset the same seed injects the same sequence of errors."""
        sim.configure(seed=99, error_rate=0.5)

        def statuses() -> list[int]:
            return [api.get("/videos/gen-vid-0-x").status_code for _ in range(30)]

        first = statuses()
        sim.reset()
        assert statuses() == first
        assert len(set(first)) > 1


class TestAdmin:
    """The /_sim endpoints."""

    def test_configure_returns_effective_config(self, sim: SimulatorThread) -> None:
        """Changed knobs are echoed back; the others keep their values."""
        config = sim.configure(error_rate=0.25, latency=[0.0, 0.01])
        assert config["error_rate"] == 0.25
        assert config["latency"] == [0.0, 0.01]
        assert config["api_key"] == KEY

    @pytest.mark.parametrize(
        "knobs",
        [{"error_rate": 2}, {"job_seconds": [3, 1]}, {"outputs": 0}, {"bogus": 1}, {"seed": "x"}],
    )
    def test_bad_config_is_refused(self, sim: SimulatorThread, knobs: dict[str, Any]) -> None:
        """A bad or unknown knob answers 400 and changes nothing."""
        answer = httpx.post(f"{sim.admin_url}/config", json=knobs)
        assert answer.status_code == 400
        assert answer.json()["error"]["message"]
        assert httpx.get(f"{sim.admin_url}/config").json()["error_rate"] == 0.0

    def test_reset_forgets_jobs_and_counters(self, sim: SimulatorThread, api: httpx.Client) -> None:
        """After reset the stats are empty and old jobs are unknown."""
        job = submit(api)
        api.get(f"/videos/{job['id']}")
        sim.reset()
        stats = sim.stats()
        assert (stats["submits"], stats["polls"], stats["jobs"], stats["requests"]) == (
            0,
            0,
            {},
            [],
        )
        assert api.get(f"/videos/{job['id']}").status_code == 404

    def test_request_log_is_bounded(self) -> None:
        """The request log keeps only the most recent entries."""
        assert SimState(SimConfig()).requests.maxlen == REQUEST_LOG_SIZE

    def test_config_validation_in_python(self) -> None:
        """SimConfig checks and normalises its knobs when built."""
        assert SimConfig(job_seconds=[1, 2]).job_seconds == (1.0, 2.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="failure_rate"):
            SimConfig(failure_rate=1.5)
        with pytest.raises(ValueError, match="unknown"):
            SimConfig().with_changes({"nope": 1})


class TestRunning:
    """The ways to run the simulator."""

    def test_serve_in_a_running_loop(self) -> None:
        """serve() starts on a free port and cleanup() stops it."""

        async def scenario() -> int:
            runner = await serve("127.0.0.1", 0, SimConfig())
            try:
                port = bound_port(runner)
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/api/v1/videos/models")
                return answer.status_code
            finally:
                await runner.cleanup()

        assert asyncio.run(scenario()) == 200

    def test_many_concurrent_polls(self, sim: SimulatorThread) -> None:
        """A thousand concurrent polls over a hundred jobs are all answered, quickly."""
        headers = {"Authorization": f"Bearer {KEY}"}

        async def call(session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Any:
            async with session.request(method, f"{sim.base_url}{path}", **kw) as answer:
                return answer.status if method == "GET" else (await answer.json())["id"]

        async def scenario() -> list[int]:
            connector = aiohttp.TCPConnector(limit=200)
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                body = {"model": "sim/fast", "prompt": "x"}
                ids = await asyncio.gather(*(call(session, "POST", "/videos", json=body) for _ in range(100)))
                polls = (call(session, "GET", f"/videos/{ids[i % 100]}") for i in range(1000))
                return list(await asyncio.gather(*polls))

        started = time.monotonic()
        assert set(asyncio.run(scenario())) == {200}
        assert time.monotonic() - started < 10.0
        assert sim.stats()["polls"] == 1000


class TestMp4:
    """The generated videos."""

    def test_videos_are_deterministic_and_distinct(self) -> None:
        """Same job and index → same bytes; anything else → different, even where two share a look."""
        videos = [mp4.make_video(f"gen-vid-1-{n:020d}", index) for n in range(100) for index in range(2)]
        assert len(set(videos)) == len(videos)
        assert mp4._frames.cache_info().currsize < len(videos)  # looks are shared: frames drawn once per look
        assert mp4.make_video("gen-vid-1-00000000000000000000") == videos[0]
        assert all(video[4:8] == b"ftyp" for video in videos)

    def test_video_is_playable(self, tmp_path: Path) -> None:
        """ffmpeg decodes every frame without a single error."""
        imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
        path = tmp_path / "video.mp4"
        path.write_bytes(mp4.make_video("gen-vid-1700000000-abcdefghijABCDEFGHIJ", 0))
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostdin",
            "-v",
            "error",
            "-nostats",
            "-progress",
            "pipe:1",
            "-i",
            str(path),
            "-f",
            "null",
            "-",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0
        assert result.stderr == ""
        frames = re.findall(r"^frame=(\d+)$", result.stdout, flags=re.MULTILINE)
        assert frames and int(frames[-1]) == mp4.FRAMES
