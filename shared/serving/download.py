"""The page ``GET /api/download`` serves: how to get the ``workbench`` command-line client.

The Go apiserver served its Go client (ndslabsctl) as a binary per platform there. This platform's
client is the ``workbench`` command of its own Python package, so the page gives the steps that
install it on the caller's platform and log it in to this platform."""

from __future__ import annotations

from html import escape

PLATFORMS = {
    "linux": "Linux",
    "darwin": "macOS",
    "windows": "Windows",
}
"""The ``os`` values the page has steps for (``linux`` and ``darwin`` are the Go client's)."""

_POSIX_STEPS = (
    "python3 -m venv ~/.workbench-cli",
    "~/.workbench-cli/bin/pip install ./workbench-functions",
    "~/.workbench-cli/bin/workbench login --url {origin} --username YOUR-NAME",
    "~/.workbench-cli/bin/workbench stacks list",
)
_WINDOWS_STEPS = (
    r"py -3 -m venv %USERPROFILE%\workbench-cli",
    r"%USERPROFILE%\workbench-cli\Scripts\pip install .\workbench-functions",
    r"%USERPROFILE%\workbench-cli\Scripts\workbench login --url {origin} --username YOUR-NAME",
    r"%USERPROFILE%\workbench-cli\Scripts\workbench stacks list",
)


def steps(os_name: str, origin: str) -> list[str]:
    """The commands that install the client on ``os_name`` and log it in at ``origin``."""
    chosen = _WINDOWS_STEPS if os_name == "windows" else _POSIX_STEPS
    return [step.format(origin=origin) for step in chosen]


def page(origin: str, os_name: str | None) -> str:
    """The page: the steps for ``os_name`` when it is one of ``PLATFORMS``, else for each of them
    with a link to each platform's own page (as the Go apiserver listed its downloads)."""
    chosen = [os_name] if os_name in PLATFORMS else list(PLATFORMS)
    sections = []
    for name in chosen:
        commands = "\n".join(escape(step) for step in steps(name, origin))
        sections.append(
            f'<h2 id="{name}"><a href="download?os={name}">{PLATFORMS[name]}</a></h2>\n'
            f"<pre><code>{commands}</code></pre>"
        )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>Workbench command-line client</title></head>\n'
        "<body>\n<h1>Workbench command-line client</h1>\n"
        "<p>The client is the <code>workbench</code> command of the Workbench Functions Python "
        "package (Python 3.11 or later). Get a copy of the package's source folder, "
        "<code>workbench-functions</code>, from the operator of this platform, then run, in the "
        "folder that holds it:</p>\n" + "\n".join(sections) + "\n"
        "<p><code>workbench --help</code> lists every command; each has <code>--help</code> and "
        "<code>--json</code>.</p>\n</body></html>\n"
    )
