"""The ``ui`` function: the management page and its assets, their types and headers, nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from shared.serving import registry
from shared.serving import ui as page
from shared.tools.gateway import Gateway
from tests.conftest import ROOT

ASSETS = ROOT / "shared" / "data" / "ui"


@pytest.fixture(scope="module")
def ui() -> Any:
    import functions_framework

    function = registry.function("ui")
    return functions_framework.create_app(function.target, str(ROOT / function.source), "http").test_client()


def secured(response: Any) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


def test_the_page_is_served_at_the_root(ui: Any) -> None:
    response = ui.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"]
    secured(response)
    html = response.get_data(as_text=True)
    assert '<html lang="en">' in html
    assert '<script type="module" src="/ui/js/main.js"></script>' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_every_asset_is_served_with_its_type_and_a_validator(ui: Any) -> None:
    # The vendored packages' licences and notes are kept beside them, not served.
    notes = {path for path in (ASSETS / "vendor").rglob("*") if path.name in ("LICENSE", "README.md")}
    assert {path.name for path in notes} == {"LICENSE", "README.md"}
    files = [path for path in ASSETS.rglob("*") if path.is_file() and path not in notes]
    assert {path.suffix for path in files} <= set(page.CONTENT_TYPES)
    for path in files:
        name = path.relative_to(ASSETS).as_posix()
        response = ui.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.get_data() == path.read_bytes()
        assert response.headers["Content-Type"] == page.CONTENT_TYPES[path.suffix], name
        secured(response)
        unchanged = ui.get(f"/ui/{name}", headers={"If-None-Match": response.headers["ETag"]})
        assert unchanged.status_code == 304, name
        assert unchanged.get_data() == b""
    assert ui.get("/ui/js/main.js").headers["Content-Type"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nothing.js",
        "/ui/../pyproject.toml",
        "/ui/%2e%2e/pyproject.toml",
        "/ui/..%2f..%2fpyproject.toml",
        "/ui/js/../../ui.py",
        "/ui//etc/passwd",
        "/ui/%2fetc%2fpasswd",
        "/ui/..\\..\\pyproject.toml",
        "/ui/js",
        "/ui/js/",
        "/ui/index.html%00.js",
        "/ui/INDEX.HTML",
    ],
)
def test_unknown_assets_and_paths_out_of_the_folder_are_not_found(ui: Any, path: str) -> None:
    response = ui.get(path)
    assert response.status_code == 404, path
    assert response.headers["Content-Type"] == "application/json"
    assert "Error" in response.get_json()
    assert b"[project]" not in response.get_data()
    secured(response)


def test_only_files_inside_the_folder_are_assets(tmp_path: Path) -> None:
    root = tmp_path / "ui"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "js" / "main.js").write_text("export {};")
    (root / ".hidden.js").write_text("secret")
    (root / "notes.txt").write_text("not a served type")
    outside = tmp_path / "outside.js"
    outside.write_text("outside")
    (root / "js" / "linked.js").symlink_to(outside)
    assert set(page.assets(root)) == {"index.html", "js/main.js"}
    assert page.asset("js/linked.js", root) is None
    assert page.asset("../outside.js", root) is None
    assert page.index(root).content_type == "text/html; charset=utf-8"


def test_other_routes_and_methods_are_refused(ui: Any) -> None:
    assert ui.post("/").status_code == 405
    assert ui.delete("/ui/app.css").status_code == 405
    response = ui.get("/api/stacks")
    assert response.status_code == 404
    assert "no route" in response.get_json()["Error"]


def test_the_gateway_sends_the_root_and_the_assets_to_the_ui() -> None:
    gateway = Gateway()
    assert gateway.function_for("GET", "/") == "ui"
    assert gateway.function_for("GET", "/ui/js/views/stacks.js") == "ui"
    assert gateway.function_for("GET", "/api/stacks") == "stacks"
    response = Client(gateway).get("/ui/app.css")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/css; charset=utf-8"


# --- the page's own files ---------------------------------------------------------------------------------


def scripts() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(ASSETS.rglob("*.js"))}


def test_the_html_has_no_inline_script_or_style() -> None:
    html = (ASSETS / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>.*?</script>", html, re.DOTALL):
        assert re.fullmatch(r'<script type="module" src="/ui/[^"]+"></script>', tag), tag
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"


def test_every_module_import_resolves_to_an_asset() -> None:
    for path, text in scripts().items():
        for target in re.findall(r'^import .* from "(\.[^"]+)";$', text, re.MULTILINE):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"


def test_the_scripts_build_the_page_from_text_only() -> None:
    """No HTML from strings (every value the API gives is shown as text), no eval."""
    for path, text in scripts().items():
        for forbidden in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert forbidden not in text, f"{path.name} uses {forbidden}"


def test_the_page_calls_only_routes_of_the_api() -> None:
    gateway = Gateway()
    text = (ASSETS / "js" / "api.js").read_text()
    calls = re.findall(r'request\(\s*"(GET|POST|PUT|DELETE)",\s*[`"](/api/[^`"?]*)', text)
    calls += re.findall(r'fetchWithToken\(token, "(GET|POST|PUT|DELETE)", "(/api/[^"]+)"', text)
    assert len(calls) >= 15
    for method, path in calls:
        concrete = re.sub(r"\$\{[^}]+\}", "x1", path)
        name = gateway.function_for(method, concrete)
        assert name is not None and name != "ui", (method, path)
        function = registry.function(name)
        adapter_paths = [route for route in function.routes if route.method == method]
        assert adapter_paths, (method, path)


def test_the_readme_shows_a_screenshot_of_the_page() -> None:
    image = ROOT / "docs" / "management-page.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size < 300_000
    assert "(docs/management-page.png)" in (ROOT / "README.md").read_text()


def test_the_page_knows_a_file_preview_by_the_runtimes_own_words() -> None:
    from shared.adapters.runtime.local import PREVIEW

    stacks = (ASSETS / "js" / "views" / "stacks.js").read_text()
    assert f'const PREVIEW = "{PREVIEW}";' in stacks
    # A Connect link only for an endpoint with a URL: an internal service's endpoint has none.
    assert "const endpoints = connectable(service);" in stacks
    assert ".filter((endpoint) => endpoint.url)" in stacks


def test_the_send_page_says_where_apps_see_the_data_and_transfers_show_it() -> None:
    send = (ASSETS / "js" / "views" / "send.js").read_text()
    assert "which every one of your stacks mounts" not in send
    assert "sees at …/clowder inside its own folder" in send and "/data/clowder" in send
    transfers = (ASSETS / "js" / "views" / "transfers.js").read_text()
    assert "transfer.locations" in transfers and "location.path" in transfers
