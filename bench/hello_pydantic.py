"""A reference point for the cold starts: hello-world that validates its request with one pydantic
model, the least that any function of the platform does before it answers."""

from __future__ import annotations

import functions_framework
from flask import Request
from pydantic import BaseModel


class Greeting(BaseModel):
    name: str = "world"


@functions_framework.http
def hello_pydantic(request: Request) -> str:
    greeting = Greeting.model_validate(request.args.to_dict())
    return f"hello {greeting.name}"
