"""Fill the database with realistic demo data for the notebooks, by using the app for real.

Every row comes from a real turn: app.py runs as a child process, and this script chats with it
through the REST API like a user would, with varied settings, regenerations, an edit, a stopped
and continued reply, LLM failures (retried, and some past the retry bound, then retried by the
user), app crashes (kill -9 mid-turn; the turn is recovered when the app restarts) and thumbs up
or down on some replies. Then blind comparisons (POST /api/comparisons): the two models side by
side, a few with a second round, a couple between two named settings of one model (labels
"t=0.2" and "t=1.2"), each judged by a simulated voter with a known bias (below), so the
leaderboard (GET /api/leaderboard, notebooks/model_comparison.ipynb) shows a real difference
with its intervals. Nothing is inserted by hand.

    python scripts/seed_demo_data.py                  # two emulated LLM servers, a few minutes
    python scripts/seed_demo_data.py --comparisons 40 # more votes: narrower intervals
    python scripts/seed_demo_data.py --llm local      # the real local model (slower; no
                                                      # scripted LLM failures; comparisons
                                                      # between two settings of it)

The same --seed makes the same choices (prompts, settings, crashes, votes, ratings); times and
reply texts come from real turns and differ from run to run.

The simulated voter: it ties 12% of the time and calls both replies bad 5% of the time;
otherwise it prefers the reply that was done sooner (its whole wait, from the message to the
last word, as it watches both sides stream in: a blind comparison shows no timings or token
counts, only the texts; more than 50 ms apart, else the longer reply) JUDGE_BIAS (70%) of the
time, and the other one the rest. Rating a reply: a thumb up is likelier the sooner it started
and the longer it is.

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

MODELS = [  # (name, time to first token ms, ms per token): two servers, side by side
    ("Llama-3.1-8B-Instruct (emulated)", 180, 22),
    ("Qwen2.5-7B-Instruct (emulated)", 110, 16),
]
# Comparisons: a prompt and, for some, a second-round message.
COMPARE_PROMPTS = [
    ("Explain recursion to a ten-year-old", "Now with an example in Python."),
    ("Write a limerick about a forgetful robot", None),
    ("What are the trade-offs of microservices?", "Which would you pick for a team of three?"),
    ("Give me three tips for a job interview", None),
    ("How does HTTPS keep my password safe?", None),
    ("Summarise the plot of Hamlet in five sentences", "Now in one sentence."),
    ("Suggest a name for a hiking club", None),
    ("Why is the sky blue?", None),
    ("Translate 'good morning, how are you?' into French and Spanish", None),
    ("What should I check before buying a used bicycle?", "And for an e-bike?"),
    ("Write a short toast for a friend's wedding", None),
    ("How do vaccines train the immune system?", None),
]
SETTINGS_PAIR = ((0.2, "t=0.2"), (1.2, "t=1.2"))  # two named settings of one model
JUDGE_BIAS = 0.70   # how often the simulated voter picks its favourite (see the docstring)
TIE, BOTH_BAD = 0.12, 0.05

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
        # The voter's and the rater's own draws: the conversations' choices stay what they
        # were whatever is judged.
        self.judge_rng = random.Random(args.seed * 7919 + 1)
        self.llm: EmulatedLLM | None = None  # the server of the conversation being seeded
        self.stats = {"conversations": 0, "turns": 0, "failed": 0, "crashes": 0,
                      "regenerated": 0, "edited": 0, "continued": 0, "ratings": 0,
                      "comparisons": 0, "comparison rounds": 0, "votes": 0}

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
        self.llms: list[EmulatedLLM] = []
        if args.llm == "emulated":
            self.llms = [EmulatedLLM(EmulatorSettings(
                model=name, ttft_ms=ttft, tpot_ms=tpot, reply_tokens=args.tokens,
                natural=True, vary=0.35, max_model_len=8192)) for name, ttft, tpot in MODELS]
            env["VLLM_BASE_URL"] = ",".join(llm.start() for llm in self.llms)
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
                # The first half with the first model, then the person switches models.
                self.llm = self.llms[i * len(self.llms) // len(topics)] if self.llms else None
                self.conversation(i, opening, follow_ups, crash=i in crash_at,
                                  fail=i in fail_at)
            for k in range(args.comparisons):
                self.comparison(k)
        finally:
            self.app.stop()
            for llm in self.llms:
                llm.stop()
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
        if self.llm is not None:
            settings["model"] = self.llm.settings.model
        httpx.patch(f"{self.app.url}/api/conversations/{cid}", json={"settings": settings},
                    timeout=30).raise_for_status()
        first = self.say(cid, opening)
        self.maybe_rate(cid, first.get("assistant_message"))
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
            self.maybe_rate(cid, self.say(cid, text).get("assistant_message"))
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

    # -- ratings and comparisons ---------------------------------------------------------------

    def rate(self, cid: str, reply: dict[str, Any], value: int) -> None:
        tags = ["helpful"] if value > 0 else [self.judge_rng.choice(["too slow", "too short",
                                                                      "off topic"])]
        httpx.put(f"{self.app.url}/api/conversations/{cid}/messages/{reply['id']}/rating",
                  json={"value": value, "tags": tags}, timeout=30).raise_for_status()
        self.stats["ratings"] += 1

    def maybe_rate(self, cid: str, reply: dict[str, Any] | None, chance: float = 0.35) -> None:
        """A thumb on some finished replies: up likelier when it started sooner and is
        longer (what the notebook's ratings plots look for)."""
        if not reply or reply.get("status") != "complete" or \
                self.judge_rng.random() >= chance:
            return
        quick = 0.25 if (reply.get("ttft_ms") or 1e9) < 150 else -0.15
        # Longer than a typical reply (about 4 characters a token at --tokens 60).
        wordy = 0.1 if len(reply.get("content") or "") > 4 * self.args.tokens else -0.1
        self.rate(cid, reply, 1 if self.judge_rng.random() < 0.6 + quick + wordy else -1)

    def comparison_sides(self, k: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every sixth comparison: two named settings of one model; else the two models (in
        a drawn order, so neither is always A)."""
        if k % 6 == 5 or len(self.llms) < 2:
            model = MODELS[1][0] if self.llms else None
            short = f"{model.replace(' (emulated)', '')} " if model else ""
            sides: list[dict[str, Any]] = [
                {"model": model, "settings": {"temperature": t}, "label": short + name}
                for t, name in SETTINGS_PAIR]
        else:
            sides = [{"model": name, "settings": {"temperature": 0.7}} for name, _, _ in MODELS]
        self.judge_rng.shuffle(sides)
        return sides[0], sides[1]

    def comparison(self, k: int) -> None:
        """A blind comparison through the REST API, maybe a second round, then the vote and
        a thumb or two on the sides' replies (their conversations are unsealed by then)."""
        prompt, follow_up = COMPARE_PROMPTS[k % len(COMPARE_PROMPTS)]
        a, b = self.comparison_sides(k)
        comparison, waits = self.watch_round("/api/comparisons",
                                             {"content": prompt, "a": a, "b": b, "blind": True})
        self.stats["comparisons"] += 1
        self.stats["comparison rounds"] += 1
        if follow_up and k % 2 == 0:
            comparison, waits = self.watch_round(
                f"/api/comparisons/{comparison['id']}/messages", {"content": follow_up})
            self.stats["comparison rounds"] += 1
        winner = self.judge({side: comparison["sides"][side]["messages"][-1]
                             for side in ("a", "b")}, waits)
        voted = self.post(f"/api/comparisons/{comparison['id']}/vote", {"winner": winner})
        voted.raise_for_status()
        self.stats["votes"] += 1
        for side in ("a", "b"):  # revealed now: the replies with their timings
            shown = voted.json()["sides"][side]
            chance = 0.5 if winner == side else 0.3
            self.maybe_rate(shown["conversation_id"], shown["messages"][-1], chance)

    def watch_round(self, path: str, body: dict[str, Any]
                    ) -> tuple[dict[str, Any], dict[str, float]]:
        """A comparison's round as a person watches it: both sides streamed, and how long
        each took to its last word; the comparison as it stands at the end."""
        key = str(uuid.uuid4())
        for _ in range(5):  # a crash of the app (on purpose) cuts the stream: again, same key
            waits: dict[str, float] = {}
            event = ""
            start = time.monotonic()
            try:
                with httpx.stream("POST", f"{self.app.url}{path}?stream=true", json=body,
                                  headers={"Idempotency-Key": key}, timeout=300) as response:
                    response.raise_for_status()
                    for line in response.iter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "done":
                            waits[json.loads(line[6:])["side"]] = time.monotonic() - start
                        elif line.startswith("data: ") and event == "comparison":
                            return json.loads(line[6:]), waits
            except httpx.HTTPError:
                if self.app.proc is not None and self.app.proc.poll() is not None:
                    self.app.start(timeout=300)
        raise SystemExit(f"no comparison came back from POST {path}")

    def judge(self, replies: dict[str, dict[str, Any]], waits: dict[str, float]) -> str:
        """The simulated voter (see the module docstring)."""
        done = [s for s in ("a", "b") if replies[s].get("status") == "complete"]
        if len(done) < 2:
            return done[0] if done else "both_bad"
        roll = self.judge_rng.random()
        if roll < TIE:
            return "tie"
        if roll < TIE + BOTH_BAD:
            return "both_bad"
        wait = {s: waits.get(s, float("inf")) for s in done}
        if abs(wait["a"] - wait["b"]) > 0.05:
            favourite = min(done, key=lambda s: wait[s])
        else:
            favourite = max(done, key=lambda s: len(replies[s].get("content") or ""))
        other = "b" if favourite == "a" else "a"
        return favourite if self.judge_rng.random() < JUDGE_BIAS else other

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
    parser.add_argument("--comparisons", type=int, default=20,
                        help="blind comparisons, each voted on by the simulated voter")
    parser.add_argument("--tokens", type=int, default=60, help="typical reply length (emulated)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    stats = Seeder(args).run()
    print("Done: " + ", ".join(f"{v} {k}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
