"""Fill the database with realistic demo data for the notebooks, by using the app for real.

Every row comes from a real turn: app.py runs as a child process, and this script chats with it
through the REST API like a user would, with varied settings, regenerations, an edit, a stopped
and continued reply, LLM failures (retried, and some past the retry bound, then retried by the
user) and app crashes (kill -9 mid-turn; the turn is recovered when the app restarts). Nothing is
inserted by hand.

    python scripts/seed_demo_data.py                  # emulated LLM server, about a minute
    python scripts/seed_demo_data.py --llm local      # the real local model (slower; no
                                                      # scripted LLM failures)

It writes to DATABASE_URL (environment or .env), or else to the embedded database in DATA_DIR,
the same one `python app.py` uses. Run it while the app is stopped (both would use the same
embedded database directory).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat_core.testing.app_process import AppProcess, free_port  # noqa: E402
from chat_core.config import load_settings  # noqa: E402
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings  # noqa: E402

MODELS = [  # (name, time to first token ms, ms per token): two servers, one after the other
    ("Llama-3.1-8B-Instruct (emulated)", 180, 22),
    ("Qwen2.5-7B-Instruct (emulated)", 110, 16),
]

TOPICS = [
    ("Plan a three-day trip to Lisbon on a budget", ["What about food?",
     "Which neighbourhood should we stay in?", "And a day trip from there?"]),
    ("Explain durable execution to a new engineer", ["How is it different from a queue?",
     "What happens if the database restarts?"]),
    ("Help me write a polite email declining a meeting", ["Make it shorter.",
     "Now more formal."]),
    ("What are good habits for writing tests?", ["Give an example in Python.",
     "How many tests is too many?", "What about flaky tests?"]),
    ("Summarise the causes of the French Revolution", ["Which cause mattered most?"]),
    ("Suggest a weekly vegetarian meal plan", ["Make Monday spicier.", "Add a shopping list."]),
    ("How do I read a PostgreSQL query plan?", ["What is a sequential scan?",
     "When is an index not used?"]),
    ("Brainstorm names for a coffee shop by the sea", ["Shorter ones, please."]),
    ("Teach me the basics of music theory", ["What is a chord?", "And a scale?",
     "How do they relate?"]),
    ("Compare SQLite and PostgreSQL for a small app", ["What about concurrency?"]),
    ("Write a haiku about autumn rain", ["Another one, about snow."]),
    ("How should I prepare for a marathon?", ["Week one plan?", "What should I eat?"]),
]
SYSTEM_PROMPTS = ["", "", "You are a concise assistant.", "Answer as a friendly tutor.",
                  "Reply in plain English, no jargon."]


class Seeder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = {"conversations": 0, "turns": 0, "failed": 0, "crashes": 0,
                      "regenerated": 0, "edited": 0, "continued": 0}

    def post(self, path: str, body: dict[str, Any] | None = None,
             key: str | None = None) -> httpx.Response:
        """Like a careful client: a request cut off by a crash is sent again, same key."""
        headers = {"Idempotency-Key": key} if key else {}
        for _ in range(600):
            try:
                r = httpx.post(self.app.url + path, json=body, headers=headers, timeout=300)
                if r.status_code != 503:
                    return r
            except httpx.HTTPError:
                if self.app.proc is not None and self.app.proc.poll() is not None:
                    self.app.start(timeout=300)  # it crashed (on purpose): start it again
            time.sleep(0.2)
        raise SystemExit(f"no answer for POST {path}")

    def say(self, cid: str, text: str) -> dict[str, Any]:
        r = self.post(f"/api/conversations/{cid}/messages", {"content": text},
                      key=str(uuid.uuid4()))
        self.stats["turns"] += 1
        if r.status_code == 502:
            self.stats["failed"] += 1
            retried = self.post(
                f"/api/conversations/{cid}/messages/{r.json()['user_message']['id']}/retry")
            self.stats["turns"] += 1
            return retried.json()
        r.raise_for_status()
        return r.json()

    def run(self) -> dict[str, int]:
        args = self.args
        settings = load_settings()
        workdir = Path(tempfile.mkdtemp(prefix="seed-"))
        env: dict[str, str | None] = {
            "PORT": str(free_port()), "EXECUTOR_ID": "seed-demo",
            "CHAT_FAULT_FILE": str(workdir / "fault"), "LOG_LEVEL": "WARNING",
            "LLM_MAX_ATTEMPTS": "4", "LLM_RETRY_INTERVAL_SEC": "0.3", "SHARE_AUTH": None}
        self.llm: EmulatedLLM | None = None
        if args.llm == "emulated":
            name, ttft, tpot = MODELS[0]
            self.llm = EmulatedLLM(EmulatorSettings(model=name, ttft_ms=ttft, tpot_ms=tpot,
                                                    reply_tokens=args.tokens, natural=True,
                                                    vary=0.35, max_model_len=8192))
            env["VLLM_BASE_URL"] = self.llm.start()
        else:
            env["VLLM_BASE_URL"] = None
        where = settings.database_url and "DATABASE_URL" or f"{settings.data_dir}/pgdata"
        print(f"Seeding demo data into {where} through app.py ({args.llm} LLM)...", flush=True)
        self.app = AppProcess(env, workdir / "app.log")
        self.app.start(timeout=300)  # the local model may have to load first
        try:
            topics = TOPICS[:args.conversations]
            crash_at = set(self.rng.sample(range(len(topics)), min(args.crashes, len(topics))))
            fail_at = set(self.rng.sample(range(len(topics)), min(args.failures, len(topics))))
            for i, (opening, follow_ups) in enumerate(topics):
                if self.llm is not None and i == len(topics) // 2:
                    name, ttft, tpot = MODELS[1]  # the server restarts with another model
                    self.llm.settings.model, self.llm.settings.ttft_ms = name, ttft
                    self.llm.settings.tpot_ms = tpot
                self.conversation(i, opening, follow_ups, crash=i in crash_at,
                                  fail=i in fail_at)
        finally:
            self.app.stop()
            if self.llm is not None:
                self.llm.stop()
        return self.stats

    def conversation(self, i: int, opening: str, follow_ups: list[str], *, crash: bool,
                     fail: bool) -> None:
        cid = self.post("/api/conversations").json()["id"]
        self.stats["conversations"] += 1
        settings: dict[str, Any] = {
            "temperature": round(self.rng.choice([0.2, 0.5, 0.7, 0.9, 1.2]), 2),
            "max_tokens": self.rng.choice([64, 128, 256, 512]),
        }
        prompt = self.rng.choice(SYSTEM_PROMPTS)
        if prompt:
            settings["system_prompt"] = prompt
        httpx.patch(f"{self.app.url}/api/conversations/{cid}", json={"settings": settings},
                    timeout=30)
        first = self.say(cid, opening)
        for n, text in enumerate(follow_ups):
            if crash and n == 0:
                # kill -9 in the middle of this turn; the retried request finds it recovered
                (Path(self.app.env["CHAT_FAULT_FILE"])).write_text(
                    self.rng.choice(["call_llm:streaming", "save_user_message:committed",
                                     "read_history:done"]))
                self.stats["crashes"] += 1
            if fail and self.llm is not None and n == 0:
                # a flaky server: two 5xx (retried by the workflow); past the bound once
                burst = [{"action": "error", "status": 503}] * 2
                if i % 2 == 0:
                    burst = [{"action": "error", "status": 500}] * 4
                self.llm.script(*burst)
            self.say(cid, text)
        if i % 3 == 0:
            self.post(f"/api/conversations/{cid}/messages/{first['user_message']['id']}/retry")
            self.stats["regenerated"] += 1
            self.stats["turns"] += 1
        if i == 1 and follow_ups:
            self.post(f"/api/conversations/{cid}/messages/{first['user_message']['id']}/edit",
                      {"content": opening + " (in more detail)"})
            self.stats["edited"] += 1
            self.stats["turns"] += 1
        if i == 2:
            self.stop_and_continue(cid)


    def stop_and_continue(self, cid: str) -> None:
        """A long reply stopped after a few words, then continued with one call."""
        if self.llm is not None:
            self.llm.settings.reply_tokens *= 8
        turn_id, deltas, event = None, 0, ""
        try:
            with httpx.stream("POST", f"{self.app.url}/api/conversations/{cid}/messages"
                              "?stream=true", json={"content": "Tell me everything, at length."},
                              timeout=300) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "turn":
                            turn_id = data["turn_id"]
                        elif event == "delta":
                            deltas += 1
                            if deltas == 5 and turn_id:
                                httpx.post(f"{self.app.url}/api/turns/{turn_id}/stop")
                        elif event in ("done", "error"):
                            break
        finally:
            if self.llm is not None:
                self.llm.settings.reply_tokens //= 8
        self.stats["turns"] += 1
        last = httpx.get(f"{self.app.url}/api/conversations/{cid}/messages").json()[-1]
        if last["role"] == "assistant" and last["status"] in ("stopped", "complete") \
                and last["content"]:
            self.post(f"/api/conversations/{cid}/messages/{last['id']}/continue")
            self.stats["continued"] += 1
            self.stats["turns"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", choices=["emulated", "local"], default="emulated")
    parser.add_argument("--conversations", type=int, default=len(TOPICS))
    parser.add_argument("--crashes", type=int, default=2)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=60, help="typical reply length (emulated)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    stats = Seeder(args).run()
    print("Done: " + ", ".join(f"{v} {k}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
