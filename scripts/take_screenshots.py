"""Retake the README's screenshots (docs/screenshots/) from a real run: app.py on a scratch
database, the local CPU model (or VLLM_BASE_URL if set), a few turns typed into headless
Chromium, then both tabs captured.

    python scripts/take_screenshots.py          # PostgreSQL on 127.0.0.1:5432 (trust auth)
    SCREENSHOT_PG_ADMIN_URL=postgresql://... python scripts/take_screenshots.py

The scratch database is dropped afterwards; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from chat_core.testing.app_process import AppProcess, free_port  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
ADMIN_URL = os.environ.get("SCREENSHOT_PG_ADMIN_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
SCRATCH_DB = "durable_chat_screenshots"
TURNS = [
    ["What is a durable workflow, in one sentence?"],
    ["Give me three tips for writing clear Python code.", "Now one more tip, about tests."],
]


def _recreate_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SCRATCH_DB}")
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + SCRATCH_DB


def _drop_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")


def _send_and_wait(page: Page, text: str) -> None:
    box = page.locator("#message-box textarea")
    box.fill(text)
    box.press("Enter")
    page.wait_for_timeout(500)
    deadline = time.monotonic() + 180
    while not box.is_enabled():
        if time.monotonic() > deadline:
            raise SystemExit(f"the reply to {text!r} did not finish within 180 s")
        page.wait_for_timeout(200)


def _newest_turn(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT workflow_id FROM messages WHERE role = 'user'"
                           " ORDER BY created_at DESC LIMIT 1").fetchone()
    if row is None:
        raise SystemExit("no turn was saved; see app.py's output above")
    return str(row[0])


def _capture(url: str, database_url: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is missing: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#message-box textarea")
        for conversation in TURNS:
            page.click("#new-chat")
            page.wait_for_timeout(300)
            for text in conversation:
                _send_and_wait(page, text)
        page.wait_for_timeout(500)
        OUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT / "chat.png"))
        page.get_by_role("tab", name="Workflows").click()
        cell = page.locator("#wf-table").get_by_text(_newest_turn(database_url))
        cell = cell.filter(visible=True).first
        cell.wait_for()
        cell.click()
        page.locator("#wf-steps").get_by_text("call_llm").first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(OUT / "workflows.png"), full_page=True)
        browser.close()


def main() -> None:
    database_url = _recreate_database()
    with tempfile.TemporaryDirectory(prefix="durable-chat-shots-") as data_dir:
        app = AppProcess({"DATABASE_URL": database_url, "PORT": str(free_port()),
                          "DATA_DIR": data_dir,
                          # Short replies keep a whole conversation in the picture.
                          "DEFAULT_MAX_TOKENS": "120"}, Path(data_dir) / "app.log")
        try:
            app.start(timeout=300)  # the local model may have to load first
            _capture(app.url, database_url)
        finally:
            app.stop()
            _drop_database()
    print(f"wrote {OUT / 'chat.png'} and {OUT / 'workflows.png'}")


if __name__ == "__main__":
    main()
