"""Repeat a hostile visitor's probes against a running app and say what each one got.

    python scripts/probe_security.py http://127.0.0.1:8080
    python scripts/probe_security.py http://127.0.0.1:8080 --auth alice:long-password

Each line is PASS (the probe got nothing) or FAIL (it got something it should not). Exit 1 on
any FAIL. Only talks to the URL given; sends a few hundred requests at most.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import uuid
from typing import Any, Callable

import httpx

EVIL = "https://evil.example"
SECRET_MARKERS = ("DATABASE_URL=", "LLM_API_KEY=", "SHARE_AUTH=", "PATH=/")
TARGETS = ("/proc/self/environ", "/etc/hostname", "/etc/passwd")


def file_payloads(path: str) -> list[Any]:
    data = {"path": path, "meta": {"_type": "gradio.FileData"}}
    return [data, [{"role": "user", "content": [{"type": "file", "file": data}]}], [data]]


def join(http: httpx.Client, fn_index: int, data: list[Any]) -> tuple[int, str]:
    """Gradio's queue as the page uses it; the join's status and every event it streamed."""
    session = uuid.uuid4().hex
    joined = http.post("/gradio_api/queue/join", json={
        "data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None,
        "session_hash": session})
    if joined.status_code != 200:
        return joined.status_code, joined.text
    text = []
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session},
                     timeout=30) as stream:
        for line in stream.iter_lines():
            text.append(line)
            if '"process_completed"' in line or '"close_stream"' in line:
                break
    return 200, "\n".join(text)


def probe_file_read(http: httpx.Client) -> str | None:
    config = http.get("/config").json()
    types = {c["id"]: c.get("type") for c in config.get("components", [])}
    leaked: list[str] = []
    statuses: dict[int, int] = {}
    for fn_index, dep in enumerate(config.get("dependencies", [])):
        fn = dep.get("id", fn_index)
        # Plausible values elsewhere, so that the event runs far enough to echo its inputs.
        plain = ["probe" if types.get(i) == "textbox" else None for i in dep.get("inputs", [])]
        for position in range(len(plain)):
            for target in TARGETS:
                for payload in file_payloads(target):
                    data = list(plain)
                    data[position] = payload
                    status, body = join(http, fn, data)
                    statuses[status] = statuses.get(status, 0) + 1
                    for url in _file_urls(body):
                        served = http.get(url)
                        if served.status_code == 200 and _secretish(served.text, target):
                            leaked.append(f"{dep.get('api_name')}[{position}] -> {url}")
    if 401 in statuses or 403 in statuses:
        return f"the probe could not join the queue (answers: {statuses}); log in first"
    print(f"      joins answered: {statuses}")
    return "; ".join(leaked[:3]) or None


def _file_urls(body: str) -> list[str]:
    urls = []
    for part in body.split("/gradio_api/file=")[1:]:
        path = part.split('"')[0].split("\\")[0]
        urls.append("/gradio_api/file=" + path)
    return urls


def _secretish(text: str, target: str) -> bool:
    return any(m in text for m in SECRET_MARKERS) or (target == "/etc/hostname" and
                                                       0 < len(text.strip()) < 100)


def probe_cors(http: httpx.Client) -> str | None:
    answer = http.get("/config", headers={"Host": "x.gradio.live", "Origin": EVIL})
    got = answer.headers.get("access-control-allow-origin")
    return f"Access-Control-Allow-Origin: {got}" if got in (EVIL, "*") else None


def probe_host(http: httpx.Client) -> str | None:
    answer = http.get("/", headers={"Host": "rebound.evil.example"})
    return f"Host rebound.evil.example answered {answer.status_code}" \
        if answer.status_code < 400 else None


def probe_cross_site_write(http: httpx.Client) -> str | None:
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"},
                    {"Content-Type": "application/x-www-form-urlencoded"}):
        answer = http.post("/api/conversations", headers=headers, content=b"")
        if answer.status_code < 400:
            return f"POST /api/conversations with {headers} answered {answer.status_code}"
    return None


def probe_url_proxy(http: httpx.Client) -> str | None:
    """Offline, a fetch Gradio attempts fails with 502: only the guard's 403 (or a login's
    401) shows that nothing was attempted."""
    for route in ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy="):
        answer = http.get(f"{route}http://1.1.1.1/x.png")
        if answer.status_code not in (401, 403):
            return f"{route}http://... answered {answer.status_code}"
    return None


def probe_framing(http: httpx.Client) -> str | None:
    headers = http.get("/").headers
    return None if headers.get("x-frame-options") == "DENY" else "the page may be framed"


def probe_bad_basic(http: httpx.Client) -> str | None:
    header = ("Basic " + base64.b64encode("jürgen:pässwort".encode()).decode() + "é")
    answer = http.get("/api/conversations", headers={"Authorization": header.encode("latin-1")})
    return f"non-ASCII Basic answered {answer.status_code}" if answer.status_code >= 500 \
        else None


def probe_guessing(http: httpx.Client, user: str) -> str | None:
    codes = [http.get("/api/conversations", auth=(user, f"guess-{i}")).status_code
             for i in range(50)]
    return None if 429 in codes else "50 wrong passwords in a row were never throttled"


def probe_secrets(http: httpx.Client) -> str | None:
    health = http.get("/healthz").text
    return "/healthz shows a credential" if "***" not in health and "@" in health else None


def probe_errors(http: httpx.Client) -> str | None:
    for path in ("/api/conversations?offset=1e23", "/api/conversations?limit=-1"):
        answer = http.get(path)
        if answer.status_code >= 500:
            return f"GET {path} answered {answer.status_code}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--auth", help="user:password of an account (SHARE_AUTH)")
    args = parser.parse_args(argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    probes: dict[str, Callable[[httpx.Client], str | None]] = {
        "host allow-list": probe_host, "cross-origin read": probe_cors,
        "cross-site write": probe_cross_site_write, "URL proxy": probe_url_proxy,
        "framing": probe_framing,
        "non-ASCII Basic": probe_bad_basic, "secrets in /healthz": probe_secrets,
        "bare 500s": probe_errors, "file read through every event": probe_file_read}
    failed = 0
    with httpx.Client(base_url=args.url, auth=auth, timeout=30) as http:
        if auth:
            http.post("/login", data={"username": auth[0], "password": auth[1]})
        for name, probe in probes.items():
            found = probe(http)
            failed += found is not None
            print(f"{'FAIL' if found else 'PASS'}  {name}" + (f": {found}" if found else ""))
        if auth:
            with httpx.Client(base_url=args.url, timeout=30) as stranger:
                found = probe_guessing(stranger, auth[0])
                failed += found is not None
                print(f"{'FAIL' if found else 'PASS'}  password guessing" +
                      (f": {found}" if found else ""))
    print(json.dumps({"failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
