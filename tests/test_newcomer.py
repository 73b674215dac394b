"""What a newcomer meets first: the README's command-line examples run as written, an empty catalog
listed, and `workbench run` on a port already taken."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from shared.tools.cli import parser
from tests.conftest import ADMIN_PASSWORD, ROOT
from tests.test_client_cli import EXECUTABLE, Cli, wait_for_stack
from tests.test_e2e import Platform

README = ROOT / "README.md"
EXAMPLE_SID = "s1abcd"
NEEDS_CLOWDER = {"send", "export"}
"""Commands of the examples that need a paired Clowder: checked against the parser, not run."""


def readme_cli_examples() -> list[list[str]]:
    """Each command of the README's "Command line" example block, as its arguments after `workbench`."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Command line", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word != "&&":
                command.append(word)
                continue
            assert command[0] == "workbench", line
            commands.append(command[1:])
            command = []
    return commands


def test_every_readme_example_is_a_valid_command_line() -> None:
    """Each example parses with the real `workbench` parser (no placeholder syntax such as [--x a|b])."""
    examples = readme_cli_examples()
    assert len(examples) >= 10
    for arguments in examples:
        parser().parse_args(arguments)  # SystemExit (2) on a usage error


def test_the_readme_says_where_workbench_is() -> None:
    section = README.read_text(encoding="utf-8").split("## Command line", 1)[1].split("```sh", 1)[0]
    assert ".venv/bin/workbench" in section
    assert ". .venv/bin/activate" in section


@pytest.mark.e2e
def test_the_readme_examples_run_as_written(workbench: Platform, tmp_path: Path) -> None:
    """Every example of the README's block against `workbench run` (send and export need a Clowder,
    so they are only parsed), with the platform's address and the stack id it printed put in."""
    admin = httpx.post(
        f"{workbench.url}/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["token"]
    created = httpx.post(
        f"{workbench.url}/api/accounts",
        headers={"Authorization": f"Bearer {admin}"},
        json={
            "namespace": "alice",
            "name": "Alice",
            "email": "alice@example.org",
            "password": "alice-password",
        },
    )
    assert created.status_code == 200, created.text
    cli = Cli(tmp_path / "config.json")
    sid = EXAMPLE_SID
    for arguments in readme_cli_examples():
        if arguments[0] in NEEDS_CLOWDER:
            continue
        arguments = [
            word.replace("http://127.0.0.1:8080", workbench.url).replace(EXAMPLE_SID, sid)
            for word in arguments
        ]
        if arguments[:2] == ["stacks", "delete"]:
            wait_for_stack(cli, sid, "stopped")
        stdin = None
        if arguments[0] == "login":  # the example asks at a terminal; a test has none
            arguments = [*arguments, "--password-stdin"]
            stdin = "alice-password\n"
        output = cli.ok(*arguments, stdin=stdin)
        if arguments[:2] == ["stacks", "create"]:
            found = re.search(r"Created stack (s[a-z0-9]{5}) \(jupyterlab,", output)
            assert found is not None, output
            sid = found.group(1)
        if arguments[:2] == ["stacks", "start"]:
            wait_for_stack(cli, sid, "started")
    assert cli.json("stacks", "list") == []


@pytest.mark.e2e
def test_an_empty_user_catalog_is_listed_not_a_traceback(workbench: Platform, tmp_path: Path) -> None:
    """`workbench catalog list --catalog user` with nothing in the caller's own catalog."""
    cli = Cli(tmp_path / "config.json", workbench.url)
    cli.login("admin", ADMIN_PASSWORD)
    output = cli.ok("catalog", "list", "--catalog", "user")
    assert output == "Your own catalog is empty: `workbench catalog list` shows the system's services.\n"
    assert cli.json("catalog", "list", "--catalog", "user") == []
    assert "jupyterlab" in cli.ok("catalog", "list")


def test_workbench_run_on_a_port_in_use_changes_nothing(tmp_path: Path) -> None:
    """The port is taken before the database is made or an admin password printed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
        environment |= {
            "WORKBENCH_PORT": str(port),
            "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
            "WORKBENCH_RUNTIME": "local",
        }
        result = subprocess.run(
            [str(EXECUTABLE), "run"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert f"cannot serve on 127.0.0.1:{port}: another program is listening there" in result.stderr
    assert "WORKBENCH_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
