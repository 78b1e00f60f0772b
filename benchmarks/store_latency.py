"""Segment write latency on the local disk against the S3 store (with its spool), and the
S3 store's upload throughput (issue 20).

The same real :class:`~proxy.storage.writer.RecordingWriter` writes the same recordings
(received PCMU, 1 s chunks, ``--segment-seconds`` segments, fsync per chunk as the
default) through a :class:`~proxy.storage.store.LocalDiskStore`, then through an
:class:`~proxy.storage.s3_store.S3SegmentStore` whose bucket is a moto server started in
its own process (``moto_server`` on ``--port``, loopback).  Latency is the writer's own
figure for each ``store.append`` (its ``on_write`` hook: what a slow store would add to
the writer's queue).  Throughput is what went up, read back and was verified, over the
time from the first write until the spool was empty.

    flock /tmp/i20-bench.lock .venv/bin/python benchmarks/store_latency.py \\
        --recordings 100 --seconds 30 --out benchmarks/results-store-latency.json

Bounded by ``--recordings`` and ``--timeout``; the folders are removed at the end.
moto keeps objects in memory and is no stand-in for a real bucket's round trip: the
upload figure says what the uploader can do, not what a WAN link to S3 will.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3  # moto's own dependency (the test extras)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.media.g711 import wire_samples  # noqa: E402
from proxy.storage.bucket import Bucket, BucketSettings  # noqa: E402
from proxy.storage.crypto import generate_keypair  # noqa: E402
from proxy.storage.s3_store import S3SegmentStore  # noqa: E402
from proxy.storage.store import LocalDiskStore, SegmentStore  # noqa: E402
from proxy.storage.writer import RecordingWriter  # noqa: E402

KEY_ID, SECRET = "bench-key", "bench-secret"  # moto accepts any credentials


def start_moto(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/moto-api/", timeout=1
            )
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"moto_server did not answer on port {port}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def write(
    store: SegmentStore, root: Path, args: argparse.Namespace, drained: Callable[[], bool]
) -> dict[str, object]:
    """Write ``args.recordings`` recordings through ``store``; the latency of each append,
    and the wall time until ``drained()``."""
    _, public_key = generate_keypair()
    latencies: list[float] = []
    writer = RecordingWriter(store, on_write=latencies.append)
    frames = round(args.seconds * 8000)
    codes = np.random.default_rng(20).integers(0, 256, size=(frames, 2), dtype=np.uint8)
    audio = wire_samples(codes, "PCMU")
    blocks = [audio[start : start + 8000] for start in range(0, frames, 8000)]
    started = time.monotonic()
    for _ in range(args.recordings):
        rid = uuid.uuid4()
        writer.open(
            rid,
            root,
            public_key,
            segment_seconds=args.segment_seconds,
            start_time_ms=int(time.time() * 1000),
        )
        for i, block in enumerate(blocks):
            writer.submit(rid, block, final=i == len(blocks) - 1)
    writer.stop(timeout=args.timeout)
    written = time.monotonic() - started
    deadline = started + args.timeout
    while not drained() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {
        "appends": len(latencies),
        "append_ms_p50": round(1000 * percentile(latencies, 0.5), 3),
        "append_ms_p99": round(1000 * percentile(latencies, 0.99), 3),
        "append_ms_max": round(1000 * max(latencies), 3),
        "written_seconds": round(written, 2),
        "drained": drained(),
        "drained_seconds": round(time.monotonic() - started, 2),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="recproxy-store-"))
    results: dict[str, object] = {
        "recordings": args.recordings,
        "seconds_per_recording": args.seconds,
        "segment_seconds": args.segment_seconds,
        "fsync": "chunk",
    }
    try:
        results["disk"] = write(LocalDiskStore(), work / "disk", args, lambda: True)
        server = start_moto(args.port)
        try:
            endpoint = f"http://127.0.0.1:{args.port}"
            boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=SECRET,
            ).create_bucket(Bucket="bench")
            bucket = Bucket(BucketSettings(endpoint, "bench", "us-east-1", KEY_ID, SECRET))
            store = S3SegmentStore(bucket, work / "spool")
            store.start()
            try:
                s3 = write(store, work / "spool", args, lambda: store.snapshot().pending == 0)
                snapshot = store.snapshot()
                seconds = float(s3["drained_seconds"])  # type: ignore[arg-type]
                s3.update(
                    objects=snapshot.uploaded,
                    upload_failures=snapshot.failures,
                    uploaded_mb=round(snapshot.bytes_uploaded / 1e6, 2),
                    upload_mb_per_s=round(snapshot.bytes_uploaded / 1e6 / seconds, 2),
                    objects_per_s=round(snapshot.uploaded / seconds, 1),
                    recorded_call_seconds_per_s=round(args.recordings * args.seconds / seconds, 1),
                )
                results["s3"] = s3
            finally:
                store.close()
        finally:
            server.terminate()
            server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["cpus"] = os.cpu_count()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per recording")
    parser.add_argument("--segment-seconds", type=int, default=10)
    parser.add_argument("--port", type=int, default=39_020, help="moto_server's port")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--out", type=Path, help="also write the results JSON here")
    args = parser.parse_args()
    results = run(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
