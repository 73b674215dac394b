"""The data folder's place in the home and in every app."""

from __future__ import annotations

import pytest

from shared.core import datafolder
from shared.core.errors import InvalidInput
from shared.core.models import ServiceSpec


def spec(*mounts: str) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "key": "app",
            "label": "App",
            "image": {"name": "example/app"},
            "volumeMounts": [{"mountPath": mount} for mount in mounts],
        }
    )


def test_the_data_folder_is_mounted_beneath_the_apps_first_folder() -> None:
    assert datafolder.mount_path(spec("/home/jovyan/work", "/srv")) == "/home/jovyan/work/clowder"
    assert datafolder.mount_path(spec("/home/rstudio/")) == "/home/rstudio/clowder"


def test_an_app_without_a_folder_sees_the_data_folder_at_the_fixed_path() -> None:
    assert datafolder.mount_path(spec()) == "/data/clowder"


@pytest.mark.parametrize(
    ("target", "in_home"),
    [
        ("Soil samples", "Clowder/Soil samples"),
        ("Clowder/Soil samples", "Clowder/Soil samples"),
        ("a/b", "Clowder/a/b"),
    ],
)
def test_targets_are_folders_inside_the_data_folder(target: str, in_home: str) -> None:
    assert datafolder.target_in_home(target) == in_home


@pytest.mark.parametrize("target", ["../AppData", "/etc", "Clowder", "Clowder/../x", ""])
def test_targets_outside_the_data_folder_are_refused(target: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        datafolder.target_in_home(target)
    assert refused.value.field == "target"


def test_a_home_path_is_said_in_the_apps_terms() -> None:
    jupyter = spec("/home/jovyan/work")
    assert datafolder.in_app(jupyter, "Clowder/Soil samples") == "/home/jovyan/work/clowder/Soil samples"
    assert datafolder.in_app(jupyter, "Clowder") == "/home/jovyan/work/clowder"
    assert datafolder.in_app(jupyter, "AppData/x") is None


def test_the_data_folder_is_found_beneath_the_apps_folder() -> None:
    assert datafolder.beneath("/home/jovyan/work", "/home/jovyan/work/clowder") == "clowder"
    assert datafolder.beneath("/home/jovyan/work/", "/home/jovyan/work/clowder") == "clowder"
    assert datafolder.beneath("/srv", "/data/clowder") == "clowder"
    assert datafolder.beneath("/", "/clowder") == "clowder"


def test_the_engines_socket_is_not_the_apps_folder() -> None:
    app = ServiceSpec.model_validate(
        {
            "key": "app",
            "image": {"name": "example/app"},
            "volumeMounts": [{"type": "docker", "mountPath": "/var/run/docker.sock"}, {"mountPath": "/srv"}],
        }
    )
    assert datafolder.mount_path(app) == "/srv/clowder"


def test_an_apps_folder_is_mapped_back_to_the_home() -> None:
    mounts = [("AppData/s1-jupyter-x", "/home/jovyan/work"), ("Clowder", "/home/jovyan/work/clowder")]
    assert datafolder.folder_in_home("/home/jovyan/work/clowder/results", mounts) == "Clowder/results"
    assert datafolder.folder_in_home("/home/jovyan/work/clowder", mounts) == "Clowder"
    assert datafolder.folder_in_home("/home/jovyan/work/notes/", mounts) == "AppData/s1-jupyter-x/notes"
    assert datafolder.folder_in_home("results", mounts) == "Clowder/results"
    assert datafolder.folder_in_home("Clowder/results", []) == "Clowder/results"
    two_stacks = [
        *mounts,
        ("AppData/s2-jupyter-y", "/home/jovyan/work"),
        ("Clowder", "/home/jovyan/work/clowder"),
    ]
    assert datafolder.folder_in_home("/home/jovyan/work/clowder/r", two_stacks) == "Clowder/r"
    for folder, seen_by in (
        ("/home/jovyan/work/notes", two_stacks),  # a different folder in each stack
        ("/etc", mounts),
        ("/home/jovyan/work/../../../etc", mounts),
        ("../x", mounts),
    ):
        with pytest.raises(InvalidInput) as refused:
            datafolder.folder_in_home(folder, seen_by)
        assert refused.value.field == "folder"
