"""The Clowder test server in a process of its own, as the benchmarks run it (``python -m tests.clowder_server``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from bench.support import ROOT

API_KEY = "process-key"


def test_the_server_run_as_a_module_lists_and_serves_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "a.txt").write_bytes(b"alpha\n")
    command = [sys.executable, "-m", "tests.clowder_server", str(tmp_path / "root"), "--api-key", API_KEY]
    command += ["--dataset", f"study={folder}"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            started = json.loads(server.stdout.readline())
            dataset = started["datasets"]["study"]
            headers = {"X-API-Key": API_KEY}
            listed = httpx.get(
                f"{started['url']}/api/v2/datasets/{dataset['id']}/files", headers=headers, timeout=10
            )
            assert listed.status_code == 200, listed.text
            file_id = dataset["files"]["raw/a.txt"]
            body = httpx.get(f"{started['url']}/api/v2/files/{file_id}", headers=headers, timeout=10)
            assert body.status_code == 200 and body.content == b"alpha\n"
        finally:
            server.terminate()
            server.wait(10)
