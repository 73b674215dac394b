"""The platform on a container engine, with carol's started stack and dave, who has none, for the console's
tests and its browser test (a plugin of conftest).

``site`` is one per module, and takes the ``engine`` fixture of the module that uses it (imported there,
``from tests.engines import engine``), so each such module keeps engines of its own."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.engines import APP_FOLDER, Engine, catalog_app
from tests.test_e2e import Platform as Workbench
from tests.test_e2e import bearer, wait_for_status

APP = catalog_app("notebook", "Notebook", "busybox httpd serving its folder", serves=APP_FOLDER)
SENT = "Field Study/readme.txt"
SENT_TEXT = "hello from Clowder"


class Site:
    """The platform on the engine, with carol's started stack and dave, who has none."""

    def __init__(self, workbench: Workbench, http: httpx.Client) -> None:
        self.workbench = workbench
        self.http = http
        self.carol = ""
        self.dave = ""
        self.sid = ""
        self.ssid = ""
        self.stopped_ssid = ""

    def login(self, user: str, password: str) -> str:
        answer = self.http.post("/api/authenticate", json={"username": user, "password": password})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def socket_url(self, ssid: str, **query: str) -> str:
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        return self.workbench.url.replace("http://", "ws://") + f"/api/console?ssid={ssid}{extra}"


@pytest.fixture(scope="module")
def site(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console")
    workbench = Workbench(
        folder / "data", settings={"WORKBENCH_RUNTIME": "docker", "DOCKER_HOST": engine.url}
    )
    workbench.start()
    http = httpx.Client(base_url=workbench.url, timeout=10)
    site = Site(workbench, http)
    try:
        admin = site.login("admin", ADMIN_PASSWORD)
        for user in ("carol", "dave"):
            account = {"namespace": user, "name": user.title(), "email": f"{user}@example.org"}
            created = http.post(
                "/api/accounts", headers=bearer(admin), json={**account, "password": f"{user}-pw1"}
            )
            assert created.status_code == 200, created.text
        site.carol = site.login("carol", "carol-pw1")
        site.dave = site.login("dave", "dave-pw1")
        assert http.post("/api/services", json=APP, headers=bearer(site.carol)).status_code == 200
        site.sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(site.carol)).json()["id"]
        stopped = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(site.carol)).json()
        site.stopped_ssid = stopped["services"][0]["id"]
        # A file of the data folder, where a transfer places it.
        sent = workbench.data_dir / "home" / "carol" / "Clowder" / SENT
        sent.parent.mkdir(parents=True)
        sent.write_text(SENT_TEXT + "\n")
        assert http.get(f"/api/start/{site.sid}", headers=bearer(site.carol)).status_code == 202
        stack = wait_for_status(http, site.sid, "started", site.carol, seconds=60)
        site.ssid = stack["services"][0]["id"]
        yield site
    finally:
        http.close()
        workbench.stop()
