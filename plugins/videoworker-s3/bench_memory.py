"""Peak memory of one large upload through the plugin, against the floor of just reading the file in parts.

Run it from a videoworker checkout with the plugin installed (`pip install -e 'plugins/videoworker-s3[test]'`):

    python plugins/videoworker-s3/bench_memory.py --size-mib 1024

It makes a sparse file of that size, starts moto's S3 server in a process of its own (so
moto's memory, which holds every object, is not counted as the plugin's), and then, each
in a fresh process that has imported the same modules and opened the same client:

* floor: reads the file in ``part_size`` chunks and hashes them, as the upload does, but sends nothing;
* upload: ``videoworker_store_output`` of the file (a multipart upload, one part in memory at a time).

It prints one JSON line: each phase's peak RSS growth over its own starting RSS (MiB), the
upload's time, and moto's peak RSS for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import resource
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _serve(port: int, stop: Connection) -> None:
    """The moto server: runs until told to stop, then reports its own peak RSS."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop.send("ready")
    stop.recv()
    stop.send(_peak_mib())
    server.stop()


def _phase(kind: str, endpoint: str, bucket: str, path: str, sha256: str, part_size: int, out: Connection) -> None:
    """One measured phase, in a fresh process: 'floor' or 'upload'."""
    import videoworker_s3 as s3

    from videoworker import OutputFile, Settings, VideoRequest

    async def run() -> dict[str, Any]:
        section = {"bucket": bucket, "endpoint_url": endpoint, "part_size": part_size, "multipart_threshold": part_size}
        settings = Settings(data_dir=Path(tempfile.gettempdir()), openrouter_api_key="k", plugins={"s3": section})
        await s3.videoworker_startup(settings)
        size = os.path.getsize(path)
        output = OutputFile("bench", 0, Path(path), size, sha256)
        start_rss, started = _rss_mib(), time.perf_counter()
        if kind == "floor":
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := await asyncio.to_thread(handle.read, part_size):
                    digest.update(chunk)
                    del chunk
        else:
            await s3.videoworker_store_output(VideoRequest(id="bench", model="bench/video"), output, settings)
        seconds = time.perf_counter() - started
        await s3.videoworker_shutdown(settings)
        return {"start_rss_mib": start_rss, "peak_growth_mib": _peak_mib() - start_rss, "seconds": seconds}

    out.send(asyncio.run(run()))


def _in_process(target: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-size-mib", type=int, default=16)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    size, part_size = args.size_mib * MiB, args.part_size_mib * MiB

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "video.mp4"
        with path.open("wb") as handle:
            handle.write(b"\x00\x00\x00\x18ftypmp42")
            handle.truncate(size)  # sparse: the rest reads as zeros without taking disk
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(part_size):
                digest.update(chunk)

        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        port = _free_port()
        moto = context.Process(target=_serve, args=(port, theirs))
        moto.start()
        assert ours.recv() == "ready"
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        floor = _in_process(_phase, "floor", endpoint, "bench", str(path), digest.hexdigest(), part_size)
        upload = _in_process(_phase, "upload", endpoint, "bench", str(path), digest.hexdigest(), part_size)
        stored = boto3.client("s3", endpoint_url=endpoint).head_object(Bucket="bench", Key="bench/0.mp4")
        ours.send("stop")
        moto_peak = ours.recv()
        moto.join()

    print(
        json.dumps(
            {
                "file_mib": args.size_mib,
                "part_size_mib": args.part_size_mib,
                "stored_bytes_match": stored["ContentLength"] == size,
                "floor_peak_growth_mib": round(floor["peak_growth_mib"], 1),
                "upload_peak_growth_mib": round(upload["peak_growth_mib"], 1),
                "upload_over_floor_mib": round(upload["peak_growth_mib"] - floor["peak_growth_mib"], 1),
                "upload_seconds": round(upload["seconds"], 1),
                "upload_mib_per_s": round(args.size_mib / upload["seconds"], 1),
                "moto_peak_rss_mib": round(moto_peak, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
