"""The ``workbench`` command as installed: importing catalogs, help, and how it reports mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.adapters.store import SYSTEM_CATALOG
from shared.adapters.store.sql import open_store
from shared.bootstrap import Platform
from shared.core.settings import Settings
from tests.conftest import ROOT, Api
from tests.test_catalog import shipped_spec_files
from tests.users import Users

WORKBENCH = Path(sys.executable).with_name("workbench")
TEST_SPECS = ROOT / "tests" / "data" / "specs"
TEST_KEYS = sorted(json.loads(path.read_text())["key"] for path in TEST_SPECS.glob("*.json"))


def workbench(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with this test's environment (its own WORKBENCH_DATA_DIR)."""
    return subprocess.run(
        [str(WORKBENCH), *arguments],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def keys_in(api: Api, token: str, catalog: str) -> list[str]:
    response = api.call("GET", f"/api/services?catalog={catalog}", token)
    assert response.status_code == 200, response.get_json()
    return [spec["key"] for spec in response.get_json()]


def test_import_into_a_fresh_data_dir(isolated_environment: Path) -> None:
    result = workbench("catalog", "import", str(TEST_SPECS))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Imported {len(TEST_KEYS)} specs and 0 vocabularies into the system catalog.\n"
    # badspec.json breaks the schema but loads, as the Go apiserver loaded it.
    assert "warning: badspec.json: loaded, but breaks the spec schema" in result.stderr
    assert "Traceback" not in result.stderr
    store = open_store(Settings.from_env().store.database_url)
    try:
        specs = store.list_specs(SYSTEM_CATALOG)
    finally:
        store.close()
    assert [spec.key for spec in specs] == TEST_KEYS
    assert {spec.catalog for spec in specs} == {"system"}


def test_import_adds_to_the_system_catalog(api: Api, platform: Platform) -> None:
    admin = platform.tokens.issue("admin", admin=True)
    shipped = keys_in(api, admin, "system")
    assert not set(TEST_KEYS) & set(shipped)

    result = workbench("catalog", "import", str(TEST_SPECS))
    assert result.returncode == 0, result.stderr
    assert f"Imported {len(TEST_KEYS)} specs" in result.stdout

    assert keys_in(api, admin, "system") == sorted([*shipped, *TEST_KEYS])
    # Importing again replaces the same keys and adds nothing.
    assert workbench("catalog", "import", str(TEST_SPECS)).returncode == 0
    assert keys_in(api, admin, "system") == sorted([*shipped, *TEST_KEYS])


def test_import_into_a_users_catalog_needs_the_account(api: Api, platform: Platform) -> None:
    result = workbench("catalog", "import", str(TEST_SPECS), "--user", "alice")
    assert result.returncode == 1
    assert "account 'alice' not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""

    users = Users(api, platform)
    alice = users.make("alice")
    bob = users.make("bob")
    assert keys_in(api, alice, "user") == []  # nothing was left behind for the new account

    result = workbench("catalog", "import", str(TEST_SPECS), "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout == f"Imported {len(TEST_KEYS)} specs and 0 vocabularies into the catalog of 'alice'.\n"
    )

    response = api.call("GET", "/api/services?catalog=user", alice)
    assert [spec["key"] for spec in response.get_json()] == TEST_KEYS
    assert {spec["catalog"] for spec in response.get_json()} == {"user"}
    assert {spec["privileged"] for spec in response.get_json()} == {False}
    assert keys_in(api, bob, "user") == []
    assert not set(TEST_KEYS) & set(keys_in(api, alice, "system"))


def test_missing_folder_is_an_error_naming_it(isolated_environment: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-catalog"
    a_file = tmp_path / "spec.json"
    a_file.write_text("{}")
    for folder in (missing, a_file):
        result = workbench("catalog", "import", str(folder))
        assert result.returncode == 1, result
        last_line = result.stderr.splitlines()[-1]
        assert last_line == f"workbench: catalog folder '{folder}' does not exist or is not a folder"
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_help(isolated_environment: Path) -> None:
    top = workbench("--help")
    assert top.returncode == 0, top.stderr
    assert "usage: workbench" in top.stdout
    assert "run" in top.stdout
    assert "catalog" in top.stdout

    importer = workbench("catalog", "import", "--help")
    assert importer.returncode == 0, importer.stderr
    assert "usage: workbench catalog import" in importer.stdout
    assert "directory" in importer.stdout
    assert "--user" in importer.stdout


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (("bogus",), "invalid choice: 'bogus'"),
        ((), "required: COMMAND"),
        (("catalog",), "required: ACTION"),
        (("catalog", "import"), "required: directory"),
        (("catalog", "import", str(TEST_SPECS), "--colour"), "unrecognized arguments: --colour"),
    ],
    ids=["unknown-command", "no-command", "no-action", "no-directory", "unknown-option"],
)
def test_usage_mistakes_exit_2(
    isolated_environment: Path, arguments: tuple[str, ...], complaint: str
) -> None:
    result = workbench(*arguments)
    assert result.returncode == 2, (arguments, result)
    assert complaint in result.stderr, (arguments, result.stderr)
    assert "Traceback" not in result.stderr


def test_init_prepares_a_deployment_once_and_again_changes_nothing(
    isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workbench init` (the cluster's Job): schema, admin account, catalog; a second run is harmless."""
    from shared.adapters.store import SYSTEM_CATALOG
    from shared.bootstrap import Platform
    from shared.core.settings import Settings

    monkeypatch.delenv("WORKBENCH_ADMIN_PASSWORD")
    first = workbench("init")
    assert first.returncode == 0, first.stderr
    assert "password (shown only this once)" in first.stdout
    second = workbench("init")
    assert second.returncode == 0, second.stderr
    assert "password" not in second.stdout

    platform = Platform(Settings.from_env())
    try:
        assert platform.store.get_account("admin") is not None
        assert len(platform.store.list_specs(SYSTEM_CATALOG)) == len(shipped_spec_files())
    finally:
        platform.close()


def test_workbench_run_says_stacks_run_as_local_processes_when_no_engine_answers(tmp_path: Path) -> None:
    """The banner of `workbench run` on a machine where no Docker or Podman answers, and how to change it."""
    from tests.test_e2e import Platform as Workbench

    settings = {"WORKBENCH_RUNTIME": "auto", "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    with Workbench(tmp_path / "data", settings=settings) as workbench:
        assert httpx.get(f"{workbench.url}/api/healthz", timeout=5).status_code == 200
        banner = [line for line in workbench.log.read_text().splitlines() if line.startswith("Stacks run")]
    assert banner == [
        "Stacks run as local processes: no Docker or Podman answers (set DOCKER_HOST, or "
        "WORKBENCH_RUNTIME=docker to insist)"
    ]


def test_workbench_run_says_the_runtime_was_chosen_when_local_processes_are_forced(tmp_path: Path) -> None:
    """With WORKBENCH_RUNTIME=local the banner says so, not that no engine answers."""
    from tests.test_e2e import Platform as Workbench

    with Workbench(tmp_path / "data", settings={"WORKBENCH_RUNTIME": "local"}) as workbench:
        assert httpx.get(f"{workbench.url}/api/healthz", timeout=5).status_code == 200
        banner = [line for line in workbench.log.read_text().splitlines() if line.startswith("Stacks run")]
    assert banner == [
        "Stacks run as local processes (WORKBENCH_RUNTIME=local; auto or docker for containers)"
    ]
