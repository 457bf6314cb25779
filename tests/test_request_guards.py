"""What a hostile web page or client meets at the door: DNS rebinding (a foreign Host), cross-site
reads (CORS) and writes (Origin, Sec-Fetch-Site, form content types), Gradio's URL proxy and its
heartbeat stream, and the login cookie's SameSite. Seed-style clients, sending none of the
browser headers, keep working."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from chat_core.web.request_guards import allowed_hosts, host_allowed
from tests.helpers import InProcessApp, base_env

pytestmark = pytest.mark.slow

USER, PASSWORD = "host", "long enough password"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def shared(database_url: str, llm: EmulatedLLM, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[InProcessApp]:
    env = base_env(database_url, llm.base_url, tmp_path_factory.mktemp("guards"),
                   SHARE_AUTH=f"{USER}:{PASSWORD}", ALLOWED_HOSTS="chat.example.org")
    app = InProcessApp(env, share=True).start()
    yield app
    app.stop()


def test_a_foreign_host_name_is_refused(app: InProcessApp) -> None:
    """A page on evil.example that rebinds its name to 127.0.0.1 sends Host: evil.example."""
    with app.client() as http:
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 400
        assert http.get("/api/conversations",
                        headers={"Host": "evil.example:8080"}).status_code == 400
        assert http.get("/api/conversations",
                        headers={"Host": f"localhost:{app.settings.port}"}).status_code == 200


def test_configured_and_share_host_names_pass(shared: InProcessApp) -> None:
    with shared.client() as http:
        for host in ("chat.example.org", "abc123.gradio.live"):
            page = http.get("/", headers={"Host": host})
            assert page.status_code == 200, host
        assert http.get("/", headers={"Host": "gradio.live.evil.example"}).status_code == 400


def test_listening_on_all_interfaces_allows_the_machines_names() -> None:
    hosts = allowed_hosts("0.0.0.0", ["lab-box.local"])
    assert "lab-box.local" in hosts and "127.0.0.1" in hosts
    assert "*.gradio.live" not in hosts
    assert "*.gradio.live" in allowed_hosts("127.0.0.1", share_mode=True)


def test_no_cross_origin_reads_with_credentials(shared: InProcessApp) -> None:
    """Gradio reflects any Origin with credentials for a non-localhost Host unless the parent
    app has a CORS policy: a logged-in visitor's browser must not hand their data to evil."""
    headers = {"Host": "abc123.gradio.live", "Origin": EVIL}
    with shared.client() as http:
        for path in ("/config", "/gradio_api/info", "/api/conversations"):
            answer = http.get(path, headers=headers, auth=(USER, PASSWORD))
            assert "access-control-allow-origin" not in answer.headers, path
            assert "access-control-allow-credentials" not in answer.headers, path
        preflight = http.options("/gradio_api/queue/join", headers={
            **headers, "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("access-control-allow-origin") not in (EVIL, "*")


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "text/plain"},
    {"Content-Type": "multipart/form-data; boundary=x"},
], ids=["origin", "null-origin", "cross-site", "same-site", "form", "text-plain", "multipart"])
def test_cross_site_writes_are_refused(app: InProcessApp, headers: dict[str, str]) -> None:
    with app.client() as http:
        before = len(http.get("/api/conversations").json())
        refused = http.post("/api/conversations", headers=headers, content=b"")
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "cross_site_request"
        assert len(http.get("/api/conversations").json()) == before


def test_cross_site_queue_join_is_refused(app: InProcessApp) -> None:
    with app.client() as http:
        joined = http.post("/gradio_api/queue/join", headers={"Origin": EVIL},
                           json={"data": [], "fn_index": 0, "session_hash": "x"})
        assert joined.status_code == 403


def test_same_origin_and_plain_clients_keep_working(app: InProcessApp) -> None:
    own = f"http://127.0.0.1:{app.settings.port}"
    with app.client() as http:
        assert http.post("/api/conversations").status_code == 201  # the seed's client
        assert http.post("/api/conversations", headers={
            "Origin": own, "Sec-Fetch-Site": "same-origin"}, json={}).status_code == 201
        assert http.post("/api/conversations", headers={"Sec-Fetch-Site": "none"},
                         json={}).status_code == 201


def test_cross_site_logout_is_refused_and_the_cookie_is_lax(shared: InProcessApp) -> None:
    with shared.client() as http:
        assert http.get("/logout", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        login = http.post("/login", data={"username": USER, "password": PASSWORD})
        assert login.status_code == 200
        cookies = login.headers.get_list("set-cookie")
        assert cookies and not any("samesite=none" in c.lower() for c in cookies)


def test_gradio_fetches_no_url_for_a_visitor(app: InProcessApp) -> None:
    """/gradio_api/file=<URL> (and the older /file/<URL>) make the server fetch any public URL
    and serve it from this origin with the upstream's content type: a page of another site's
    script running as this app."""
    with app.client() as http:
        for route in ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy="):
            for target in ("https://example.com/x.png", "http://1.1.1.1/x.png",
                           "//example.com/x", "HTTP:/example.com/x"):
                answer = http.get(f"{route}{target}")
                assert answer.status_code == 403, route + target


def test_other_sites_cannot_open_gradio_routes(app: InProcessApp) -> None:
    with app.client() as http:
        for site in ("cross-site", "same-site"):
            answer = http.get("/gradio_api/info", headers={"Sec-Fetch-Site": site,
                                                           "Sec-Fetch-Mode": "navigate"})
            assert answer.status_code == 403
        assert http.get("/gradio_api/info", headers={"Sec-Fetch-Site": "same-origin"}
                        ).status_code == 200


def test_no_other_site_may_frame_the_app(app: InProcessApp) -> None:
    with app.client() as http:
        for path in ("/", "/api/conversations", "/config"):
            headers = http.get(path).headers
            assert headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert headers["x-content-type-options"] == "nosniff", path


def test_component_server_routes_are_closed(app: InProcessApp) -> None:
    with app.client() as http:
        for body in ({"component_id": 99999, "fn_name": "x", "data": None,
                      "session_hash": "s"}, None):
            answer = http.post("/gradio_api/component_server", json=body) if body else \
                http.post("/gradio_api/component_server", data={"x": "1"})
            assert answer.status_code == 404


def test_the_heartbeat_needs_a_login(shared: InProcessApp) -> None:
    with shared.client() as http:
        assert http.get("/gradio_api/heartbeat/anything").status_code == 401
        http.post("/login", data={"username": USER, "password": PASSWORD})
        with http.stream("GET", "/gradio_api/heartbeat/anything") as beat:
            assert beat.status_code == 200


def test_analytics_are_off(app: InProcessApp) -> None:
    with httpx.Client(base_url=app.url) as http:
        assert http.get("/config").json().get("analytics_enabled") is False


@pytest.mark.parametrize("host, ok", [
    ("localhost:8080", True), ("127.0.0.1", True), ("[::1]:8080", True),
    ("abc.gradio.live", True), ("gradio.live", False), ("evilgradio.live", False),
    ("chat.example.org:443", True), ("chat.example.org.evil", False), ("", False),
    ("evil.example", False)])
def test_host_names_match_exactly_or_by_suffix(host: str, ok: bool) -> None:
    allowed = allowed_hosts("127.0.0.1", ["chat.example.org"], share_mode=True)
    assert host_allowed(host, allowed) is ok
