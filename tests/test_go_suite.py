"""The Go Workbench's own API test suite, its Postman collection as it is, replayed against ``workbench run``.

The collection's requests go out in its order with its headers and bodies; its test scripts run
through a small interpreter of the forms they use (``pm.test``, ``pm.response.to.have.status``,
``pm.response.to.be.json``, ``pm.expect(...).to.eql``, ``pm.environment.set/get``, its loop over the
account list, and the ``postman.setNextRequest`` polling loops, here bounded). A form it does not
know fails the test rather than being skipped. The one change: the requests go to ``http://``, which
is what ``workbench run`` serves.

The collection (nds-org/ndslabs, ``apiserver/postman/Workbench.postman_collection.json``) is not part
of this repository: the tests that replay it run where ``WORKBENCH_GO_SUITE`` names a copy of it."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.test_e2e import Platform

pytestmark = pytest.mark.e2e

SUITE = Path(os.environ.get("WORKBENCH_GO_SUITE", "")) if os.environ.get("WORKBENCH_GO_SUITE") else None
"""A copy of the Go Workbench's Postman collection, where one is given."""
needs_suite = pytest.mark.skipif(
    SUITE is None,
    reason="WORKBENCH_GO_SUITE names no copy of the Go Workbench's Postman collection "
    "(nds-org/ndslabs apiserver/postman/Workbench.postman_collection.json)",
)
ENVIRONMENT = {
    "username": "pmtest",
    "password": "pmtest-password-1",
    "email": "pmtest@example.org",
    "admin_username": "admin",
    "admin_password": ADMIN_PASSWORD,
}
GO_BUG = ("Post invalid JSON", "HTTP response")
"""The one check expected to fail: it wants the Go apiserver's 500 for a body that is not JSON."""
POLLS = 120
POLL_SECONDS = 0.5


# --- the scripts' forms ----------------------------------------------------------------------------


class ScriptError(Exception):
    """What makes a Postman script throw (a property of undefined, a body that is not JSON)."""


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()


@dataclass(frozen=True)
class Status:
    code: int


@dataclass(frozen=True)
class BeJson:
    pass


@dataclass(frozen=True)
class ParseJson:
    pass


@dataclass(frozen=True)
class SetVariable:
    name: str
    expression: str


@dataclass(frozen=True)
class Expect:
    actual: str
    expected: str


@dataclass(frozen=True)
class PmTest:
    name: str
    body: list[Any]


@dataclass(frozen=True)
class ForTheUser:
    """``for(i=0; i<jsonData.length; i++){ if (jsonData[i].id == pm.environment.get("username")) {...} }``"""

    body: list[Any]


@dataclass(frozen=True)
class PollUntil:
    """``if (jsonData.status !== "<status>") { postman.setNextRequest(<again>) } else { ...(<then>) }``"""

    status: str
    again: str
    then: str


PATTERNS = {
    "test": re.compile(r'pm\.test\("(?P<name>[^"]+)", function \(\) \{'),
    "end_test": re.compile(r"\}\);"),
    "status": re.compile(r"pm\.response\.to\.have\.status\((?P<code>\d+)\);"),
    "be_json": re.compile(r"pm\.response\.to\.be\.json;?"),
    "parse_json": re.compile(r"var jsonData = pm\.response\.json\(\);"),
    "set": re.compile(r'pm\.environment\.set\("(?P<name>\w+)", (?P<expression>.+?)\);'),
    "expect": re.compile(r"pm\.expect\((?P<actual>.+?)\)\.to\.eql\((?P<expected>.+)\);"),
    "for": re.compile(r"for\(i=0; i<jsonData\.length; i\+\+\)\{"),
    "if_user": re.compile(r'if \(jsonData\[i\]\.id == pm\.environment\.get\("username"\)\) \{'),
    "if_status": re.compile(r'if \(jsonData\.status !== "(?P<status>\w+)"\) \{'),
    "next": re.compile(r'postman\.setNextRequest\("(?P<name>[^"]+)"\);'),
    "timeout": re.compile(r"setTimeout\(function\(\) \{\}, \d+\);"),
    "else": re.compile(r"\} else \{"),
    "brace": re.compile(r"\}"),
}


def _match(kind: str, line: str) -> re.Match[str] | None:
    return PATTERNS[kind].fullmatch(line)


def _expect_line(lines: list[str], position: int, kind: str) -> re.Match[str]:
    found = _match(kind, lines[position]) if position < len(lines) else None
    if found is None:
        raise ValueError(f"expected {kind} at {lines[position : position + 1]!r}")
    return found


def parse(exec_lines: list[str]) -> list[Any]:
    """The statements of a test script; ValueError for any form this interpreter does not know."""
    lines = [line.strip() for line in exec_lines]
    lines = [line for line in lines if line and not line.startswith("//")]
    statements, position = _parse_block(lines, 0, None)
    assert position == len(lines)
    return statements


def _parse_block(lines: list[str], position: int, end: str | None) -> tuple[list[Any], int]:
    statements: list[Any] = []
    while position < len(lines):
        line = lines[position]
        position += 1
        if end is not None and _match(end, line):
            return statements, position
        if found := _match("test", line):
            body, position = _parse_block(lines, position, "end_test")
            statements.append(PmTest(found["name"], body))
        elif found := _match("status", line):
            statements.append(Status(int(found["code"])))
        elif _match("be_json", line):
            statements.append(BeJson())
        elif _match("parse_json", line):
            statements.append(ParseJson())
        elif found := _match("set", line):
            statements.append(SetVariable(found["name"], found["expression"]))
        elif found := _match("expect", line):
            statements.append(Expect(found["actual"], found["expected"]))
        elif _match("for", line):
            _expect_line(lines, position, "if_user")
            body, position = _parse_block(lines, position + 1, "brace")
            _expect_line(lines, position, "brace")
            statements.append(ForTheUser(body))
            position += 1
        elif found := _match("if_status", line):
            again = _expect_line(lines, position, "next")["name"]
            _expect_line(lines, position + 1, "timeout")
            _expect_line(lines, position + 2, "else")
            then = _expect_line(lines, position + 3, "next")["name"]
            _expect_line(lines, position + 4, "brace")
            statements.append(PollUntil(found["status"], again, then))
            position += 5
        else:
            raise ValueError(f"the interpreter knows no {line!r}")
    if end is not None:
        raise ValueError(f"a block is not closed ({end})")
    return statements, position


# --- running them ----------------------------------------------------------------------------------


@dataclass
class Check:
    request: str
    test: str
    passed: bool
    detail: str


@dataclass
class Run:
    """One replay: the environment the scripts set, and every check's outcome, in order."""

    environment: dict[str, Any]
    checks: list[Check] = field(default_factory=list)


@dataclass
class Reply:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError as error:
            raise ScriptError(f"JSONError: {error}") from None


def _substitute(text: str, environment: dict[str, Any]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda found: str(environment.get(found[1], found[0])), text)


def _evaluate(expression: str, environment: dict[str, Any], data: Any, index: int | None) -> Any:
    if found := re.fullmatch(r'pm\.environment\.get\("(\w+)"\)', expression):
        return environment.get(found[1], UNDEFINED)
    if found := re.fullmatch(r"jsonData((?:\.\w+|\[\w+\])*)", expression):
        value = data
        for name, position in re.findall(r"\.(\w+)|\[(\w+)\]", found[1]):
            if value is UNDEFINED or value is None:
                raise ScriptError(f"TypeError: cannot read {name or position!r} of {value!r} in {expression}")
            if name == "length" and isinstance(value, list | str):
                value = len(value)
            elif name:
                value = value.get(name, UNDEFINED) if isinstance(value, dict) else UNDEFINED
            else:
                at = index if position == "i" else int(position)
                value = (
                    value[at] if isinstance(value, list) and at is not None and at < len(value) else UNDEFINED
                )
        return value
    try:
        return json.loads(expression)
    except ValueError:
        raise ValueError(f"the interpreter knows no expression {expression!r}") from None


def _eql(actual: Any, expected: Any) -> bool:
    return bool(actual == expected and isinstance(actual, bool) == isinstance(expected, bool))


class Script:
    """A request's test script run on its reply; what it records goes to ``run``."""

    def __init__(self, run: Run, request: str, reply: Reply) -> None:
        self.run, self.request, self.reply = run, request, reply
        self.data: Any = UNDEFINED
        self.next_request: str | None = None

    def execute(self, statements: list[Any], index: int | None = None) -> None:
        for statement in statements:
            self.step(statement, index)

    def step(self, statement: Any, index: int | None) -> None:
        environment, reply = self.run.environment, self.reply
        if isinstance(statement, PmTest):
            try:
                self.execute(statement.body, index)
            except (AssertionError, ScriptError) as failure:
                detail = f"{failure} <- {reply.status} {reply.text[:300]}"
                self.run.checks.append(Check(self.request, statement.name, False, detail))
            else:
                self.run.checks.append(Check(self.request, statement.name, True, ""))
        elif isinstance(statement, Status):
            assert reply.status == statement.code, f"expected status {statement.code}, got {reply.status}"
        elif isinstance(statement, BeJson):
            assert "json" in reply.content_type, f"expected JSON, got {reply.content_type!r}"
            reply.json()
        elif isinstance(statement, ParseJson):
            self.data = reply.json()
        elif isinstance(statement, SetVariable):
            value = _evaluate(statement.expression, environment, self.data, index)
            if value is UNDEFINED:
                environment.pop(statement.name, None)
            else:
                environment[statement.name] = value
        elif isinstance(statement, Expect):
            actual = _evaluate(statement.actual, environment, self.data, index)
            expected = _evaluate(statement.expected, environment, self.data, index)
            assert _eql(actual, expected), f"{statement.actual}: expected {expected!r}, got {actual!r}"
        elif isinstance(statement, ForTheUser):
            if not isinstance(self.data, list):
                raise ScriptError(f"TypeError: jsonData is not a list: {self.data!r}")
            for position, element in enumerate(self.data):
                if isinstance(element, dict) and element.get("id") == environment.get("username"):
                    self.execute(statement.body, position)
        elif isinstance(statement, PollUntil):
            status = _evaluate("jsonData.status", environment, self.data, index)
            self.next_request = statement.again if status != statement.status else statement.then
        else:  # pragma: no cover - parse() makes nothing else
            raise AssertionError(statement)


def requests_of(collection: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in collection["item"]:
        if "request" in entry:
            yield entry
        else:
            yield from requests_of(entry)


def script_of(entry: dict[str, Any]) -> list[Any]:
    lines = [
        line
        for event in entry.get("event", [])
        if event["listen"] == "test"
        for line in event["script"]["exec"]
    ]
    return parse(lines)


def send(http: httpx.Client, entry: dict[str, Any], environment: dict[str, Any]) -> Reply:
    request = entry["request"]
    url = _substitute(request["url"]["raw"], environment).replace("https://", "http://", 1)
    headers = {header["key"]: _substitute(header["value"], environment) for header in request["header"]}
    body = request["body"]
    content = _substitute(body["raw"], environment).encode() if body.get("mode") == "raw" else None
    response = http.request(request["method"], url, headers=headers, content=content)
    return Reply(response.status_code, response.headers.get("Content-Type", ""), response.text)


def replay(http: httpx.Client, host: str, collection: dict[str, Any]) -> Run:
    """Every request in order; a polling loop repeats its request until it moves on, at most ``POLLS`` times."""
    run = Run(environment=ENVIRONMENT | {"host": host})
    entries = list(requests_of(collection))
    position, polls = 0, 0
    while position < len(entries):
        entry = entries[position]
        reply = send(http, entry, run.environment)
        script = Script(run, entry["name"], reply)
        try:
            script.execute(script_of(entry))
        except (AssertionError, ScriptError) as failure:  # the script threw outside any pm.test
            run.checks.append(
                Check(entry["name"], "(script)", False, f"{failure} <- {reply.status} {reply.text[:300]}")
            )
        if script.next_request == entry["name"] and polls < POLLS:
            polls += 1
            time.sleep(POLL_SECONDS)
            continue
        if script.next_request == entry["name"]:
            run.checks.append(
                Check(entry["name"], "(polling)", False, f"still {reply.text[:300]} after {POLLS} polls")
            )
        elif script.next_request is not None:
            # The loops name the request that follows them; anything else would change the order.
            assert script.next_request == entries[position + 1]["name"], script.next_request
        position, polls = position + 1, 0
    return run


# --- the tests ---------------------------------------------------------------------------------------


@needs_suite
def test_the_interpreter_knows_the_collections_forms_and_refuses_others() -> None:
    assert SUITE is not None
    collection = json.loads(SUITE.read_text(encoding="utf-8"))
    scripts = {entry["name"]: script_of(entry) for entry in requests_of(collection)}
    assert scripts["Wait for stack start"][-1] == PollUntil(
        "started", "Wait for stack start", "Get stack logs"
    )
    assert isinstance(scripts["Get verify token"][-1].body[0], ForTheUser)
    for unknown in (["pm.response.to.have.header('X');"], ['pm.test("x", function () {'], ["eval(x);"]):
        with pytest.raises(ValueError):
            parse(unknown)


def test_a_failing_check_is_recorded_as_failed() -> None:
    run = Run(environment={"username": "pmtest"})
    reply = Reply(
        200, "application/json", json.dumps([{"id": "pmtest", "status": "unverified", "token": "t1"}])
    )
    lines = [
        "var jsonData = pm.response.json();",
        'pm.test("status", function () {',
        "    pm.response.to.have.status(201);",
        "});",
        'pm.test("loop", function () {',
        "    for(i=0; i<jsonData.length; i++){",
        '        if (jsonData[i].id == pm.environment.get("username")) {',
        '            pm.expect(jsonData[i].status).to.eql("approved");',
        "        }",
        "    }",
        "});",
        'pm.test("missing", function () {',
        "    pm.expect(jsonData[0].nothing.deeper).to.eql(1);",
        "});",
    ]
    Script(run, "r", reply).execute(parse(lines))
    assert [(check.test, check.passed) for check in run.checks] == [
        ("status", False),
        ("loop", False),
        ("missing", False),
    ]


@needs_suite
def test_the_go_suite_passes_but_for_gos_500_on_invalid_json(workbench: Platform) -> None:
    assert SUITE is not None
    collection = json.loads(SUITE.read_text(encoding="utf-8"))
    with httpx.Client(timeout=60) as http:
        run = replay(http, f"127.0.0.1:{workbench.port}", collection)

    failed = [check for check in run.checks if not check.passed]
    assert [(check.request, check.test) for check in failed] == [GO_BUG], "\n".join(
        f"{check.request} :: {check.test} :: {check.detail}" for check in failed
    )
    (bug,) = failed
    assert bug.detail.startswith("expected status 500, got 400"), bug.detail
    declared = {
        (entry["name"], statement.name)
        for entry in requests_of(collection)
        for statement in script_of(entry)
        if isinstance(statement, PmTest)
    }
    assert declared <= {(check.request, check.test) for check in run.checks}
    assert len(run.checks) >= 120
