"""The registry names its routes' models instead of importing them; the names resolve, and cheaply."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from shared.core import models
from shared.core.models import DeadLetter
from shared.domain.transfers import TransferRequest
from shared.serving import registry
from tests.conftest import ROOT

ROUTES = [(function, route) for function in registry.FUNCTIONS for route in function.routes]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found = [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []
    return found + [
        model for argument in getattr(annotation, "__args__", ()) for model in _models_in(argument)
    ]


@pytest.mark.parametrize(
    ("function", "route"),
    ROUTES,
    ids=[f"{function.name}:{route.method} {route.path}" for function, route in ROUTES],
)
def test_every_body_and_reply_names_what_exists(function: registry.Function, route: registry.Route) -> None:
    if route.body is not None:
        assert issubclass(registry.model(route.body), BaseModel)
        assert registry.annotation(route.body) is registry.model(route.body)
    if route.reply is not None:
        resolved = registry.annotation(route.reply)
        assert resolved in (str, list[str]) or _models_in(resolved), route.reply


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Stack", models.Stack),
        ("str", str),
        ("list[str]", list[str]),
        ("list[Stack]", list[models.Stack]),
        ("dict[str, list[Config]]", dict[str, list[models.Config]]),
        (" list[ Export ] ", list[models.Export]),
        ("TransferRequest", TransferRequest),
        ("list[DeadLetter]", list[DeadLetter]),
    ],
)
def test_annotations_resolve_to_the_types_they_name(text: str, expected: Any) -> None:
    assert registry.annotation(text) == expected


def test_an_unknown_model_is_named() -> None:
    with pytest.raises(LookupError, match="'Stak'"):
        registry.annotation("list[Stak]")


@pytest.mark.parametrize("text", ["tuple[str]", "list[Stack", "Optional[Stack]"])
def test_an_annotation_outside_the_small_grammar_is_refused(text: str) -> None:
    with pytest.raises((ValueError, LookupError)):
        registry.annotation(text)


def test_the_registry_and_the_serving_code_import_no_model() -> None:
    """What every function imports first builds no pydantic model: each function builds its own."""
    script = (
        "import json, sys\n"
        "import shared.serving.registry, shared.serving.api\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'"
        " or m in ('shared.core.models', 'events.types', 'shared.domain.transfers', 'shared.domain.deadletters'))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == []
