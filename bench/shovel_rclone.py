"""The shovel's sync of staged objects from an S3 API into a folder, against ``rclone copy`` of the same
objects from the same endpoint (moto's S3 server, a process of its own)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.report import Figure, median
from bench.support import BIN, clean_environment, free_port, running, stopwatch, wait_for_http, workdir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from shared.domain.messages import SyncCommand

ROUNDS = 3
"""Each round runs rclone and the shovel once, alternately; the figures are the medians."""
BUCKET = "bench-staging"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # noqa: S105
REGION = "us-east-1"
MIB = 1 << 20
LARGE_FILES = 16
LARGE_SIZE = 32 * MIB
SMALL_FILES = 200
SMALL_SIZE = 16 * 1024


@dataclass(frozen=True)
class Staged:
    """An object in the bucket, as a sync command names it."""

    key: str
    path: str
    size: int
    sha256: str


def _parallelism() -> int:
    from shovel.settings import ShovelSettings

    return ShovelSettings(user="bench", stack_id="bench", home=Path("/")).parallel


@contextmanager
def moto_server(work: Path) -> Iterator[str]:
    """moto's S3 server in a process of its own (as S3 is to a shovel); its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(command, environment=clean_environment(), log=work / "moto.log") as process:
        wait_for_http(f"{endpoint}/moto-api/", process, seconds=60, interval=0.1)
        yield endpoint


def _client(endpoint: str) -> S3Client:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(
        "s3", endpoint_url=endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
    )


def stage(endpoint: str) -> list[Staged]:
    """Random files put under their content address (``blobs/sha256/…``), each in one PUT, so that its
    ETag is its MD5 and rclone can check what it downloads."""
    from shared.adapters.objectstore import blob_key

    client = _client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    files = [(f"large/part-{number:02d}.bin", LARGE_SIZE) for number in range(LARGE_FILES)]
    files += [
        (f"small/{number // 50:02d}/file-{number:04d}.bin", SMALL_SIZE) for number in range(SMALL_FILES)
    ]
    staged: list[Staged] = []
    for path, size in files:
        data = os.urandom(size)
        sha256 = hashlib.sha256(data).hexdigest()
        client.put_object(Bucket=BUCKET, Key=blob_key(sha256), Body=data)
        staged.append(Staged(blob_key(sha256), path, size, sha256))
    return staged


def sync_command(endpoint: str, staged: list[Staged]) -> SyncCommand:
    """The sync command the transfer function sends for these objects: pre-signed URLs, sizes, sha256."""
    from shared.adapters.objectstore.s3 import S3ObjectStore
    from shared.domain.messages import SyncCommand, SyncFile

    store = S3ObjectStore(
        bucket=BUCKET, endpoint_url=endpoint, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    files = [
        SyncFile(path=item.path, size=item.size, sha256=item.sha256, url=store.presign_get(item.key, 3600))
        for item in staged
    ]
    return SyncCommand(transfer_id="bench-shovel-rclone", user="bench", target="Clowder/bench", files=files)


def shovel_seconds(home: Path, command: SyncCommand, parallel: int) -> float:
    """The shovel's own sync code (``Syncer.run``) placing every file of the command into ``home``,
    with the pool and HTTP client the daemon gives it; checked after the clock stops."""
    from shovel.settings import ShovelSettings
    from shovel.sync import Syncer

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = ShovelSettings(user="bench", stack_id="sbench", home=home, parallel=parallel, health_port=0)
    stop = threading.Event()
    with httpx.Client(follow_redirects=False) as client, ThreadPoolExecutor(parallel) as pool:
        syncer = Syncer(settings, client=client, pool=pool, cancelled=stop.is_set, pause=stop.wait)
        with stopwatch() as took:
            progress = syncer.run(command)
    if progress.errors or len(progress.placed) != len(command.files):
        raise RuntimeError(f"the shovel did not place every file: {progress.errors[:3]}")
    _check(home / command.target, {file.path: file.sha256 or "" for file in command.files})
    shutil.rmtree(home)
    os.sync()
    return took[0]


def rclone_seconds(endpoint: str, target: Path, staged: list[Staged], parallel: int) -> float:
    """``rclone copy`` of the same objects from the same endpoint into ``target``, ``--transfers`` the
    shovel's parallelism; rclone checks each download's MD5 against the object's ETag (its default)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    environment = clean_environment(
        {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
            "RCLONE_CONFIG_BENCH_REGION": REGION,
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG": os.devnull,
        }
    )
    # The AWS SDK inside rclone cannot combine a custom CA bundle with rclone's HTTP transport, and the
    # endpoint is plain HTTP anyway.
    environment.pop("AWS_CA_BUNDLE", None)
    command = [
        "rclone",
        "copy",
        f"bench:{BUCKET}/blobs",
        str(target),
        "--transfers",
        str(parallel),
        "--checkers",
        str(parallel),
    ]
    with stopwatch() as took:
        finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"rclone failed: {finished.stderr[-2000:]}")
    _check(target, {item.key.removeprefix("blobs/"): item.sha256 for item in staged})
    shutil.rmtree(target)
    os.sync()
    return took[0]


def _check(folder: Path, expected: dict[str, str]) -> None:
    for relative, sha256 in expected.items():
        digest = hashlib.sha256()
        with (folder / relative).open("rb") as placed:
            while chunk := placed.read(8 * MIB):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"{relative} arrived with other content than was staged")


def run(rounds: int = ROUNDS) -> list[Figure]:
    work = workdir("shovel_rclone")
    parallel = _parallelism()
    shovel_runs: list[float] = []
    rclone_runs: list[float] = []
    try:
        with moto_server(work) as endpoint:
            staged = stage(endpoint)
            command = sync_command(endpoint, staged)
            for number in range(1, rounds + 1):
                rclone_runs.append(rclone_seconds(endpoint, work / "rclone", staged, parallel))
                shovel_runs.append(shovel_seconds(work / "home", command, parallel))
                print(
                    f"bench: shovel_rclone round {number}: rclone {_rate(staged, rclone_runs[-1]):.0f} MB/s, "
                    f"shovel {_rate(staged, shovel_runs[-1]):.0f} MB/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [figure(staged, parallel, shovel_runs, rclone_runs)]


def _rate(staged: list[Staged], seconds: float) -> float:
    return sum(item.size for item in staged) / 1e6 / seconds


def figure(staged: list[Staged], parallel: int, shovel_runs: list[float], rclone_runs: list[float]) -> Figure:
    details: dict[str, Any] = {
        "objects": f"{LARGE_FILES} of {LARGE_SIZE // MIB} MiB and {SMALL_FILES} of {SMALL_SIZE // 1024} KiB "
        f"({sum(item.size for item in staged) / MIB:.0f} MiB), each put in one PUT under blobs/sha256/…",
        "endpoint": "moto's S3 server (python -m moto.server), a process of its own",
        "shovel": "shovel.sync.Syncer.run on one sync command with a pre-signed URL, size and sha256 per "
        f"file (as the transfer function sends it), {parallel} files at once; every file's sha256 checked, "
        "fsynced and placed atomically through the partial folder",
        "rclone": f"rclone copy --transfers {parallel} --checkers {parallel} from the bucket to a folder "
        "(configured by RCLONE_CONFIG_* variables); MD5 of each download checked against the ETag "
        "(its default), no fsync",
        "rounds": len(shovel_runs),
        "shovel_mb_s": [round(_rate(staged, seconds), 1) for seconds in shovel_runs],
        "rclone_mb_s": [round(_rate(staged, seconds), 1) for seconds in rclone_runs],
    }
    return Figure(
        key="shovel_vs_rclone_ratio",
        what="the shovel's sync of staged S3 objects into a folder, vs rclone copy of the same objects",
        value=median([_rate(staged, seconds) for seconds in shovel_runs]),
        unit="MB/s",
        baseline=median([_rate(staged, seconds) for seconds in rclone_runs]),
        higher_is_better=True,
        target=1.0,
        details=details,
    )
