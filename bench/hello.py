"""The benchmarks' baseline: the smallest function functions-framework can serve."""

from __future__ import annotations

import functions_framework
from flask import Request


@functions_framework.http
def hello(request: Request) -> str:
    return "hello"
