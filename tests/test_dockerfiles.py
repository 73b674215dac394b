"""The two images, checked without a container engine: base, non-root user, no dev extras, entry points."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.adapters.runtime.processes import free_port
from shovel.settings import ShovelSettings
from tests.conftest import ROOT
from tests.test_functions import first_answer

Instruction = tuple[str, str]


def instructions(name: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, f"{name} ends inside a continued line"
    result = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def arguments_of(name: str, keyword: str) -> list[str]:
    return [arguments for found, arguments in instructions(name) if found == keyword]


def exec_form(name: str, keyword: str) -> list[str]:
    (entrypoint,) = arguments_of(name, keyword)
    command = json.loads(entrypoint)  # the exec form: no shell in between to swallow signals
    assert isinstance(command, list)
    return [str(part) for part in command]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.shovel"])
def test_each_image_is_slim_python_installed_without_dev_extras(name: str) -> None:
    assert arguments_of(name, "FROM") == ["python:3.11-slim"]
    runs = " ".join(arguments_of(name, "RUN"))
    assert "pip install ." in runs
    assert "[" not in runs and " -e " not in runs, "the image installs the package alone, without extras"
    for source in (part for arguments in arguments_of(name, "COPY") for part in shlex.split(arguments)[:-1]):
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is copied but .dockerignore leaves it out"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.shovel"])
def test_each_image_runs_as_a_numeric_non_root_user(name: str) -> None:
    steps = instructions(name)
    users = [index for index, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, f"{name} has no USER"
    user = steps[users[-1]][1]
    assert user.isdigit() and int(user) != 0, f"{name} runs as {user!r}"
    start = next(index for index, (keyword, _) in enumerate(steps) if keyword in ("ENTRYPOINT", "CMD"))
    assert users[-1] < start
    assert not any(keyword == "RUN" for keyword, _ in steps[users[-1] :]), "nothing runs as root after USER"


def test_the_functions_image_serves_the_target_named_by_its_environment(tmp_path: Path) -> None:
    """The entry point, run as the image would run it (from the folder the image copies the sources
    to), serves the function FUNCTION_TARGET names on the port Knative gives in PORT."""
    command = exec_form("Dockerfile", "ENTRYPOINT")
    assert command[:2] == ["/bin/sh", "-c"]
    assert "functions-framework" in command[2] and "$FUNCTION_TARGET" in command[2] and "PORT" in command[2]
    assert arguments_of("Dockerfile", "EXPOSE") == ["8080"]
    port = free_port()
    environment = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FUNCTION_TARGET": "system",
        "PORT": str(port),
        "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
        "WORKBENCH_JWT_SECRET": "x" * 48,
    }
    log = tmp_path / "function.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        response = first_answer(f"http://127.0.0.1:{port}/api/version", server, log)
        assert response.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/stacks", timeout=5).status_code == 404  # system only
    finally:
        server.terminate()  # `exec` made functions-framework the process itself: the signal reaches it
        server.wait(timeout=10)


def test_the_shovel_image_runs_the_shovel_and_exposes_its_health_port() -> None:
    assert exec_form("Dockerfile.shovel", "ENTRYPOINT") == ["workbench", "shovel"]
    assert arguments_of("Dockerfile.shovel", "EXPOSE") == [str(ShovelSettings.health_port)]


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern) or path.startswith(f"{pattern}/") for pattern in ignore_patterns()
    )


def test_the_build_context_leaves_out_what_the_images_do_not_need() -> None:
    for path in (".venv", ".git", "var", "tests", "knative"):
        assert ignored(path), path
    for path in ("pyproject.toml", "README.md", "functions", "shared", "events", "shovel"):
        assert not ignored(path), path
