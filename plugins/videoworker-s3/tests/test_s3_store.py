"""Storing outputs in a real S3 API (moto over HTTP): puts, multipart uploads, repeats, refusals, faults and URLs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import httpx
import pytest
import videoworker_s3 as s3
from s3_testing import MakeOutput, MiB, ServerLog, StartDaemon, request

from videoworker import StorageError

SMALL_MULTIPART = {"multipart_threshold": 6 * MiB, "part_size": 5 * MiB}


def stored_bytes(raw: Any, bucket: str, key: str) -> bytes:
    return bytes(raw.get_object(Bucket=bucket, Key=key)["Body"].read())


def assert_nothing_left(raw: Any, bucket: str) -> None:
    """No object and no incomplete multipart upload in the bucket."""
    assert raw.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_a_small_output_is_put_with_its_sha256(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str
) -> None:
    """A file below the threshold goes up in one PUT, with its SHA-256 as S3 checksum and as metadata."""
    settings = await start_daemon()
    output = make_output(200_000)
    stored = await s3.videoworker_store_output(request(), output, settings)
    assert stored is not None and stored.backend == "s3" and stored.url is None
    assert stored.location == f"s3://{bucket}/req-1/0.mp4"
    assert stored_bytes(raw, bucket, "req-1/0.mp4") == output.path.read_bytes()
    head = raw.head_object(Bucket=bucket, Key="req-1/0.mp4", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": output.sha256}
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == output.sha256
    assert head["ContentType"] == "video/mp4"


async def test_a_large_output_goes_up_in_parts_and_arrives_whole(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    server_log: ServerLog,
) -> None:
    """A ~12 MiB file over a 6 MiB threshold is sent as 5 MiB parts; the object's bytes and SHA-256 are the file's."""
    settings = await start_daemon(**SMALL_MULTIPART)
    output = make_output(12 * MiB + 12345)
    await s3.videoworker_store_output(request(), output, settings)
    assert server_log.parts == [1, 2, 3] and server_log.calls["create_multipart_upload"] == 1
    data = stored_bytes(raw, bucket, "req-1/0.mp4")
    assert hashlib.sha256(data).hexdigest() == output.sha256 and len(data) == output.bytes
    head = raw.head_object(Bucket=bucket, Key="req-1/0.mp4", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == output.sha256
    assert head.get("ChecksumSHA256"), "the composite checksum of the SHA-256 part checksums"
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("size", [100_000, 12 * MiB], ids=["put", "multipart"])
async def test_a_repeat_finds_the_same_bytes_and_uploads_nothing(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    server_log: ServerLog,
    size: int,
) -> None:
    """Storing the same output again (a retry after a crash) sends no bytes and leaves the object untouched."""
    settings = await start_daemon(**SMALL_MULTIPART)
    output = make_output(size)
    first = await s3.videoworker_store_output(request(), output, settings)
    before = raw.head_object(Bucket=bucket, Key="req-1/0.mp4")
    uploads = dict(server_log.calls)
    second = await s3.videoworker_store_output(request(), output, settings)
    assert second == first
    assert dict(server_log.calls) == uploads, "no PUT, part or completion reached the server"
    after = raw.head_object(Bucket=bucket, Key="req-1/0.mp4")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])


async def test_a_different_object_at_the_key_is_never_overwritten(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str
) -> None:
    """Another object already at the key (with or without a sha256) makes the store fail, and stays as it was."""
    settings = await start_daemon()
    raw.put_object(Bucket=bucket, Key="req-1/0.mp4", Body=b"someone else's video")
    raw.put_object(Bucket=bucket, Key="req-1/1.mp4", Body=b"another", Metadata={"sha256": "ab" * 32})
    for index in (0, 1):
        with pytest.raises(StorageError, match=r"a different object is already at s3://.*refusing to overwrite"):
            await s3.videoworker_store_output(request(), make_output(5000, index=index), settings)
    assert stored_bytes(raw, bucket, "req-1/0.mp4") == b"someone else's video"
    assert stored_bytes(raw, bucket, "req-1/1.mp4") == b"another"


async def test_a_fault_in_the_middle_is_aborted_and_the_retry_succeeds(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    server_log: ServerLog,
) -> None:
    """Part 2 failing (each botocore attempt) aborts the upload; the next try uploads it whole, with no leftovers."""
    settings = await start_daemon(**SMALL_MULTIPART)
    output = make_output(12 * MiB)
    armed = True
    server_log.fail = lambda operation, args: armed and operation == "upload_part" and args[2] == 2
    with pytest.raises(StorageError, match=r"multipart upload on s3://.*req-1/0\.mp4 failed with SlowDown"):
        await s3.videoworker_store_output(request(), output, settings)
    assert server_log.parts[0] == 1 and set(server_log.parts[1:]) == {2}, "part 1 went up, part 2 was retried"
    assert_nothing_left(raw, bucket)
    armed = False
    await s3.videoworker_store_output(request(), output, settings)
    assert hashlib.sha256(stored_bytes(raw, bucket, "req-1/0.mp4")).hexdigest() == output.sha256
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_a_part_that_fails_once_is_sent_again_from_its_start(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str, server_log: ServerLog
) -> None:
    """A transient failure of part 2 is retried by the client, which rewinds the part, and the object is whole."""
    settings = await start_daemon(**SMALL_MULTIPART)
    output = make_output(12 * MiB + 1)
    failed: list[int] = []

    def once(operation: str, args: tuple[Any, ...]) -> bool:
        if operation == "upload_part" and args[2] == 2 and not failed:
            failed.append(len(args[3]))
            return True
        return False

    server_log.fail = once
    await s3.videoworker_store_output(request(), output, settings)
    assert server_log.parts == [1, 2, 2, 3] and failed == [5 * MiB]
    assert hashlib.sha256(stored_bytes(raw, bucket, "req-1/0.mp4")).hexdigest() == output.sha256


async def test_a_cancelled_upload_is_aborted(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    server_log: ServerLog,
) -> None:
    """A store cancelled between parts (the daemon stopping) aborts its multipart upload before it ends."""
    settings = await start_daemon(**SMALL_MULTIPART)
    part_one = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signal_part_one(operation: str, args: tuple[Any, ...]) -> bool:
        if operation == "upload_part" and args[2] == 1:
            loop.call_soon_threadsafe(part_one.set)
        return False

    server_log.fail = signal_part_one
    task = asyncio.create_task(s3.videoworker_store_output(request(), make_output(12 * MiB), settings))
    await part_one.wait()
    task.cancel()
    with pytest.raises((asyncio.CancelledError, StorageError)):
        await task
    assert_nothing_left(raw, bucket)


@pytest.mark.parametrize("size", [100_000, 12 * MiB], ids=["put", "multipart"])
async def test_a_file_that_does_not_match_its_sha256_is_refused(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    size: int,
) -> None:
    """A file corrupted after verification (same sha256 claimed) never becomes an object nor leaves an upload."""
    settings = await start_daemon(**SMALL_MULTIPART)
    output = make_output(size)
    with output.path.open("r+b") as handle:
        handle.seek(size - 10)
        handle.write(b"corrupted!")
    with pytest.raises(StorageError, match=r"no longer matches its verified sha256 .*: refusing to upload it"):
        await s3.videoworker_store_output(request(), output, settings)
    assert_nothing_left(raw, bucket)


async def test_bytes_the_server_stored_wrongly_are_detected_and_removed(
    start_daemon: StartDaemon,
    make_output: MakeOutput,
    raw: Any,
    bucket: str,
    server_log: ServerLog,
) -> None:
    """A part corrupted on its way in shows in S3's checksum of the object: it is removed and the store fails."""
    settings = await start_daemon(**SMALL_MULTIPART)
    server_log.corrupt_part = 2
    with pytest.raises(StorageError, match=r"S3 stored other bytes at s3://.* than were sent"):
        await s3.videoworker_store_output(request(), make_output(12 * MiB), settings)
    assert_nothing_left(raw, bucket)


async def test_a_missing_bucket_is_named(start_daemon: StartDaemon, make_output: MakeOutput) -> None:
    """A bucket that does not exist fails the store with a message naming it and NoSuchBucket."""
    settings = await start_daemon(bucket="no-such-bucket-here")
    with pytest.raises(StorageError, match=r"S3 bucket 'no-such-bucket-here' does not exist \(NoSuchBucket"):
        await s3.videoworker_store_output(request(), make_output(1000), settings)


async def test_a_presigned_url_downloads_the_object(start_daemon: StartDaemon, make_output: MakeOutput) -> None:
    """With presign_seconds, the result carries a GET URL that fetches the video, for a put and a repeat alike."""
    settings = await start_daemon(presign_seconds=300, **SMALL_MULTIPART)
    for output in (make_output(70_000, index=0), make_output(7 * MiB, index=1)):
        for _ in range(2):
            stored = await s3.videoworker_store_output(request(), output, settings)
            assert stored is not None and stored.url is not None and "X-Amz-Expires=300" in stored.url
            async with httpx.AsyncClient() as http:
                answer = await http.get(stored.url)
            assert answer.status_code == 200 and answer.content == output.path.read_bytes()


async def test_outputs_of_one_job_are_stored_concurrently(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str
) -> None:
    """Several stores at once share the daemon's client and each lands at its own key."""
    settings = await start_daemon(prefix="out")
    outputs = [make_output(50_000 + index, index=index) for index in range(4)]
    stored = await asyncio.gather(*(s3.videoworker_store_output(request(), o, settings) for o in outputs))
    assert [s.location for s in stored if s] == [f"s3://{bucket}/out/req-1/{i}.mp4" for i in range(4)]
    for index, output in enumerate(outputs):
        assert stored_bytes(raw, bucket, f"out/req-1/{index}.mp4") == output.path.read_bytes()


async def test_uploads_in_flight_are_bounded_by_max_concurrent_uploads(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many stores the daemon runs at once, at most max_concurrent_uploads hold their bytes."""
    settings = await start_daemon(prefix="out", max_concurrent_uploads=2)
    inside, most = 0, 0
    real_store = s3.store

    async def counting_store(*args: Any) -> bool:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        try:
            await asyncio.sleep(0.05)  # hold the slot long enough for the other stores to queue behind it
            return await real_store(*args)
        finally:
            inside -= 1

    monkeypatch.setattr(s3, "store", counting_store)
    outputs = [make_output(20_000 + index, index=index) for index in range(6)]
    stored = await asyncio.gather(*(s3.videoworker_store_output(request(), o, settings) for o in outputs))
    assert most == 2 and all(stored)
    for index, output in enumerate(outputs):
        assert stored_bytes(raw, bucket, f"out/req-1/{index}.mp4") == output.path.read_bytes()


async def test_two_daemons_in_one_process_keep_their_own_clients(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str
) -> None:
    """Each Settings object has its own client: shutting one daemon down leaves the other storing."""
    first, second = await start_daemon(prefix="one"), await start_daemon(prefix="two")
    await s3.videoworker_shutdown(first)
    with pytest.raises(StorageError, match="no open S3 client"):
        await s3.videoworker_store_output(request(), make_output(1000), first)
    stored = await s3.videoworker_store_output(request(), make_output(1000), second)
    assert stored is not None and stored.location == f"s3://{bucket}/two/req-1/0.mp4"


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "different-bytes"])
async def test_an_object_that_appears_during_the_upload_is_not_overwritten(
    start_daemon: StartDaemon, make_output: MakeOutput, raw: Any, bucket: str, server_log: ServerLog, same: bool
) -> None:
    """If another writer puts an object at the key after the plugin looked, the conditional write keeps it."""
    settings = await start_daemon()
    output = make_output(4000)
    raw.put_object(
        Bucket=bucket,
        Key="req-1/0.mp4",
        Body=output.path.read_bytes() if same else b"the other writer's video",
        Metadata={"sha256": output.sha256} if same else {},
    )
    server_log.hide_once.add("req-1/0.mp4")  # the plugin's look finds nothing; the PUT's precondition does
    if same:
        stored = await s3.videoworker_store_output(request(), output, settings)
        assert stored is not None and stored.location.endswith("/req-1/0.mp4")
    else:
        with pytest.raises(StorageError, match="a different object is already at"):
            await s3.videoworker_store_output(request(), output, settings)
        assert stored_bytes(raw, bucket, "req-1/0.mp4") == b"the other writer's video"
    assert not server_log.hide_once, "the plugin did look before writing"
