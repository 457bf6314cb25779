"""The conversation features through the REST API (and the service behind the UI): rename,
delete, search, settings, regenerate with alternatives, edit as a branch, stop and continue,
fork with other parameters, export and import. Each with its hostile inputs."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, in_flight_reply, query, wait_until

pytestmark = pytest.mark.slow  # the real app on PostgreSQL


def _new(http: httpx.Client, *texts: str) -> tuple[str, list[dict[str, Any]]]:
    cid = http.post("/api/conversations").json()["id"]
    results = []
    for text in texts:
        r = http.post(f"/api/conversations/{cid}/messages", json={"content": text})
        assert r.status_code == 200, r.text
        results.append(r.json())
    return cid, results


async def _together(*calls: Any) -> list[Any]:
    return list(await asyncio.gather(*calls))


def _count(app: InProcessApp, table: str) -> int:
    return query(app.settings.database_url or "", f"SELECT count(*) FROM {table}")[0][0]


# -- rename, settings -----------------------------------------------------------------------


def test_rename_and_hostile_titles(app: InProcessApp) -> None:
    with app.client() as http:
        cid, _ = _new(http, "first message")
        renamed = http.patch(f"/api/conversations/{cid}", json={"title": "  Trip notes  "})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Trip notes"
        assert {c["id"]: c["title"] for c in http.get("/api/conversations").json()}[cid] == \
            "Trip notes"
        for body, words in [({"title": 5}, "string"), ({"title": "a\x00b"}, "NUL"),
                            ({"title": "x" * 201}, "limit"), ({}, "nothing to change"),
                            ({"name": "x"}, "unknown field"), ([], "object")]:
            bad = http.patch(f"/api/conversations/{cid}", json=body)
            assert bad.status_code == 422 and words in bad.json()["error"], (body, bad.text)
        assert http.get(f"/api/conversations/{cid}").json()["title"] == "Trip notes"


def test_settings_apply_to_the_next_turns_and_are_recorded(app: InProcessApp,
                                                          llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, _ = _new(http)
        changed = http.patch(f"/api/conversations/{cid}", json={"settings": {
            "system_prompt": "Answer like a pirate.", "temperature": 0.2, "max_tokens": 300,
            "top_p": 0.9}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["settings"]["temperature"] == 0.2
        reply = http.post(f"/api/conversations/{cid}/messages",
                          json={"content": "hello"}).json()["assistant_message"]
        sent = llm.requests[-1]
        assert sent["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
        assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 300)
        assert reply["params"]["system_prompt"] == "Answer like a pirate."
        assert reply["params"]["temperature"] == 0.2
        # null goes back to the configured default
        http.patch(f"/api/conversations/{cid}", json={"settings": {"temperature": None,
                                                                   "system_prompt": None}})
        http.post(f"/api/conversations/{cid}/messages", json={"content": "again"})
        sent = llm.requests[-1]
        assert sent["temperature"] == app.settings.default_temperature
        assert sent["messages"][0]["role"] == "user"
        assert sent["max_tokens"] == 300  # still overridden


def test_two_settings_changes_at_once_both_land(app: InProcessApp) -> None:
    with app.client() as http:
        cid, _ = _new(http)
    for n in range(1, 11):
        changes = [{"temperature": n / 10}, {"top_p": n / 20}, {"max_tokens": n * 10}]
        app.call(_together(*(app.service.update_conversation(cid, settings=c)
                             for c in changes)))
        saved = app.call(app.service.get_conversation(cid))["settings"]
        assert saved == {"temperature": n / 10, "top_p": n / 20, "max_tokens": n * 10}


@pytest.mark.parametrize("settings,words", [
    ({"temperature": 3}, "temperature"), ({"temperature": "hot"}, "number"),
    ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "whole"),
    ({"max_tokens": True}, "number"), ({"seed": 1}, "unknown setting"),
    ({"system_prompt": "x" * 8001}, "limit"), ({"system_prompt": "\ud800"}, "surrogate"),
])
def test_hostile_settings(app: InProcessApp, settings: dict, words: str) -> None:
    with app.client() as http:
        cid, _ = _new(http)
        bad = http.patch(f"/api/conversations/{cid}",
                         content=json.dumps({"settings": settings}).encode(),
                         headers={"content-type": "application/json"})
        assert bad.status_code == 422 and words in bad.json()["error"], bad.text
        assert http.get(f"/api/conversations/{cid}").json()["settings"] == {}
    with app.client() as http:
        assert http.patch(f"/api/conversations/{cid}", json={"settings": "hot"}).status_code \
            == 422


# -- delete -------------------------------------------------------------------------------------


def test_delete_cancels_a_turn_in_flight_first(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, _ = _new(http, "keep nothing")
        llm.script({"action": "hang", "max_sec": 60})
        turn = app.call(app.service.start_turn(cid, "still generating"))
        wait_until(lambda: len(llm.requests) == 2)
        assert in_flight_reply(app.settings.database_url or "", cid) == turn.turn_id
        deleted = http.delete(f"/api/conversations/{cid}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["cancelled_turns"] == [turn.turn_id]
        llm.release()
        assert http.get(f"/api/conversations/{cid}").status_code == 404
        assert http.get(f"/api/conversations/{cid}/messages").status_code == 404
        assert cid not in [c["id"] for c in http.get("/api/conversations").json()]
        assert query(app.settings.database_url or "", "SELECT count(*) FROM messages WHERE"
                     " conversation_id = %s", (cid,))[0][0] == 0
        status = wait_until(lambda: http.get(f"/api/workflows/{turn.turn_id}").json()
                            .get("status") in ("CANCELLED",) and "CANCELLED")
        assert status == "CANCELLED"
        assert http.delete(f"/api/conversations/{cid}").status_code == 404
        assert http.delete("/api/conversations/not-an-id").status_code == 404


# -- search ---------------------------------------------------------------------------------


def test_search_is_ranked_and_stems_words(app: InProcessApp) -> None:
    with app.client() as http:
        lisbon, _ = _new(http, "We are planning a trip to Lisbon",
                         "Lisbon trams and Lisbon pastries")
        porto, _ = _new(http, "A weekend in Porto, maybe a day trip to Lisbon")
        _new(http, "Nothing about cities here")
        hits = http.get("/api/conversations", params={"q": "lisbon"}).json()
        ids = [h["id"] for h in hits]
        assert ids[:2] == [lisbon, porto]
        assert all("«" in h["snippet"] for h in hits[:2])
        assert hits[0]["rank"] >= hits[1]["rank"]
        assert [h["id"] for h in http.get("/api/conversations", params={"q": "plans"}).json()] \
            == [lisbon]  # "planning" stems like "plans"
        assert http.get("/api/conversations",
                        params={"q": '"day trip" -weekend'}).json() == []
        for q in ["&|!():*<>", "' OR 1=1 --", "lisbon & (", "\\"]:
            ok = http.get("/api/conversations", params={"q": q})
            assert ok.status_code == 200, (q, ok.text)
        for q, status in [("", 422), ("x" * 201, 422), ("a\x00b", 422)]:
            assert http.get("/api/conversations", params={"q": q}).status_code == status


def test_search_finds_a_reply_once_it_is_finished(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 400
    llm.settings.tpot_ms = 15
    db = app.settings.database_url or ""

    def hits(words: str) -> list[str]:
        with app.client() as http:
            return [c["id"] for c in http.get("/api/conversations", params={"q": words}).json()]

    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        turn = app.call(app.service.start_turn(cid, "a story about otters"))
        wait_until(lambda: " w40 " in (query(db, "SELECT content FROM messages WHERE id = %s",
                                              (turn.reply_id,)) or [("",)])[0][0])
        assert hits("otters") == [cid]   # the question is saved and found at once
        assert hits("w40") == []         # the half-written reply is not
        http.post(f"/api/turns/{turn.turn_id}/stop")
        app.call(app.service.wait_turn(turn))
        assert hits("w40") == [cid]


# -- regenerate and alternatives ----------------------------------------------------------


def test_regenerate_keeps_alternatives_and_selection_drives_history(app: InProcessApp,
                                                                     llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, (first,) = _new(http, "tell me a joke")
        user_id = first["user_message"]["id"]
        original = first["assistant_message"]
        regenerated = http.post(f"/api/conversations/{cid}/messages/{user_id}/retry")
        assert regenerated.status_code == 200
        second = regenerated.json()["assistant_message"]
        messages = http.get(f"/api/conversations/{cid}/messages").json()
        replies = [m for m in messages if m["role"] == "assistant"]
        assert [r["id"] for r in replies] == [original["id"], second["id"]]
        assert [r["active"] for r in replies] == [False, True]
        # The next turn's history carries the active (newest) reply...
        http.post(f"/api/conversations/{cid}/messages", json={"content": "another"})
        assert llm.requests[-1]["messages"][1]["content"] == second["content"]
        # ...until the user picks the first one again.
        picked = http.post(f"/api/conversations/{cid}/messages/{original['id']}/select")
        assert picked.status_code == 200 and picked.json()["active"] is True
        http.post(f"/api/conversations/{cid}/messages", json={"content": "and another"})
        assert llm.requests[-1]["messages"][1]["content"] == original["content"]
        # hostile: a user message, a message of another conversation, garbage
        assert http.post(f"/api/conversations/{cid}/messages/{user_id}/select").status_code \
            == 422
        other, _ = _new(http)
        assert http.post(f"/api/conversations/{other}/messages/{original['id']}/select"
                         ).status_code == 404
        assert http.post(f"/api/conversations/{cid}/messages/xyz/select").status_code == 404


def test_regenerate_stopped_before_its_first_token_keeps_the_good_reply(
        app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, (first,) = _new(http, "tell me a joke")
        original = first["assistant_message"]
        llm.script({"action": "hang"})
        turn = app.call(app.service.retry_turn(cid, first["user_message"]["id"]))
        wait_until(lambda: len(llm.requests) == 2)
        assert http.post(f"/api/turns/{turn.turn_id}/stop").json()["stopping"] is True
        llm.release()
        empty = app.call(app.service.wait_turn(turn))["assistant_message"]
        assert (empty["status"], empty["content"]) == ("stopped", "")
        replies = [m for m in http.get(f"/api/conversations/{cid}/messages").json()
                   if m["role"] == "assistant"]
        assert [(r["id"], r["active"]) for r in replies] == [(original["id"], True),
                                                            (empty["id"], False)]
        http.post(f"/api/conversations/{cid}/messages", json={"content": "another"})
        assert llm.requests[-1]["messages"][1]["content"] == original["content"]


def test_an_empty_reply_never_hides_a_good_one(app: InProcessApp) -> None:
    """A regeneration that ends without text (stopped at once, or the model said nothing) is
    kept as an alternative, but the reply shown and sent as history stays the good one."""
    store = app.service.store
    with app.client() as http:
        cid, (first,) = _new(http, "say something")
        user = app.call(store.get_message(uuid.UUID(first["user_message"]["id"])))
        for n, status in enumerate(("complete", "stopped")):
            empty = app.call(store.ensure_reply(user, uuid.uuid4(), f"empty-{n}"))
            app.call(store.finish_reply(empty["id"], status=status, content=""))
        replies = [m for m in http.get(f"/api/conversations/{cid}/messages").json()
                   if m["role"] == "assistant"]
        assert [(r["content"] != "", r["active"]) for r in replies] == \
            [(True, True), (False, False), (False, False)]


def test_alternatives_finishing_together_leave_one_active(app: InProcessApp) -> None:
    """Two replies to one message (regenerate, or a fork from the Workflows tab) completing
    in the same instant, and a selection racing them: one active reply, never two."""
    store = app.service.store

    async def race(user: dict[str, Any], round_: int) -> None:
        rows = [await store.ensure_reply(user, uuid.uuid4(), f"race-{round_}-{i}")
                for i in range(3)]
        await asyncio.gather(*(store.finish_reply(r["id"], status="complete", content=f"r{i}")
                               for i, r in enumerate(rows[:2])),
                             store.select_reply(user_reply_id))

    with app.client() as http:
        cid, (first,) = _new(http, "race")
        user = app.call(store.get_message(uuid.UUID(first["user_message"]["id"])))
        user_reply_id = uuid.UUID(first["assistant_message"]["id"])
        for round_ in range(20):
            app.call(race(user, round_))
            active = [m["id"] for m in http.get(f"/api/conversations/{cid}/messages").json()
                      if m["role"] == "assistant" and m["active"]]
            assert len(active) == 1, (round_, active)


def test_a_failed_reply_cannot_be_selected(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.script(*[{"action": "error", "status": 500}] * 3)
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        failed = http.post(f"/api/conversations/{cid}/messages", json={"content": "x"}).json()
        bad = http.post(f"/api/conversations/{cid}/messages/"
                        f"{failed['assistant_message']['id']}/select")
        assert bad.status_code == 422 and "error" in bad.json()["error"]


# -- edit as a branch ---------------------------------------------------------------------


def test_edit_branches_and_keeps_the_original(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, results = _new(http, "one", "two", "three")
        second_user = results[1]["user_message"]["id"]
        before = http.get(f"/api/conversations/{cid}/messages").json()
        edited = http.post(f"/api/conversations/{cid}/messages/{second_user}/edit",
                           json={"content": "two, rephrased"},
                           headers={"Idempotency-Key": "edit-1"})
        assert edited.status_code == 200, edited.text
        body = edited.json()
        branch = body["conversation"]
        assert branch["origin_conversation_id"] == cid
        assert branch["origin_message_id"] == second_user
        assert body["assistant_message"]["content"].startswith("Reply to [two, rephrased]")
        assert llm.requests[-1]["messages"][-1]["content"] == "two, rephrased"
        assert [m["content"] for m in llm.requests[-1]["messages"]][0] == "one"
        branch_messages = http.get(f"/api/conversations/{branch['id']}/messages").json()
        assert [m["content"] for m in branch_messages if m["role"] == "user"] == \
            ["one", "two, rephrased"]
        assert http.get(f"/api/conversations/{cid}/messages").json() == before
        # Each turn is listed under the conversation it ran in, the copied ones too.
        in_branch = http.get("/api/workflows", params={"conversation_id": branch["id"]}).json()
        assert [w["workflow_id"] for w in in_branch] == [body["assistant_message"]["workflow_id"]]
        in_source = http.get("/api/workflows", params={"conversation_id": cid}).json()
        assert sorted(w["workflow_id"] for w in in_source) == \
            sorted(r["assistant_message"]["workflow_id"] for r in results)
        assert {w["conversation_id"] for w in in_source} == {cid}
        # The same request again (same key) returns the same branch and turn.
        again = http.post(f"/api/conversations/{cid}/messages/{second_user}/edit",
                          json={"content": "two, rephrased"},
                          headers={"Idempotency-Key": "edit-1"}).json()
        assert again["conversation"]["id"] == branch["id"]
        assert again["assistant_message"]["id"] == body["assistant_message"]["id"]
        # The same key with other text is a mistake, not a repeat: refused, nothing made.
        clash = http.post(f"/api/conversations/{cid}/messages/{second_user}/edit",
                          json={"content": "two, said otherwise"},
                          headers={"Idempotency-Key": "edit-1"})
        assert clash.status_code == 422 and "Idempotency-Key" in clash.json()["error"]
        users = [m["content"] for m in http.get(f"/api/conversations/{branch['id']}/messages"
                                                ).json() if m["role"] == "user"]
        assert users == ["one", "two, rephrased"]
        # hostile
        reply_id = results[0]["assistant_message"]["id"]
        for mid, content, status in [(reply_id, "x", 422), (second_user, "", 422),
                                     (second_user, "a\x00", 422), ("nope", "x", 404),
                                     (second_user, 5, 422)]:
            bad = http.post(f"/api/conversations/{cid}/messages/{mid}/edit",
                            json={"content": content})
            assert bad.status_code == status, (mid, content, bad.text)


def test_branch_copies_the_turns_up_to_a_message(app: InProcessApp) -> None:
    with app.client() as http:
        cid, results = _new(http, "a", "b", "c")
        at = results[1]["assistant_message"]["id"]
        branch = http.post(f"/api/conversations/{cid}/messages/{at}/branch")
        assert branch.status_code == 201
        copied = http.get(f"/api/conversations/{branch.json()['id']}/messages").json()
        assert [m["content"] for m in copied if m["role"] == "user"] == ["a", "b"]
        assert len(copied) == 4
        follow = http.post(f"/api/conversations/{branch.json()['id']}/messages",
                           json={"content": "c2"}).json()
        assert follow["user_message"]["seq"] == 3


# -- stop and continue --------------------------------------------------------------------


def test_stop_then_continue_in_one_call(app: InProcessApp, llm: EmulatedLLM) -> None:
    llm.settings.reply_tokens = 300
    llm.settings.tpot_ms = 20
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        turn = app.call(app.service.start_turn(cid, "write a long story"))
        wait_until(lambda: " w5" in getattr(app.service.hub.get(turn.turn_id), "text", ""))
        assert http.post(f"/api/turns/{turn.turn_id}/stop").json()["stopping"] is True
        stopped = app.call(app.service.wait_turn(turn))["assistant_message"]
        assert stopped["status"] == "stopped" and stopped["finish_reason"] == "stopped"
        llm.settings.reply_tokens = 4
        continued = http.post(f"/api/conversations/{cid}/messages/{stopped['id']}/continue")
        assert continued.status_code == 200, continued.text
        reply = continued.json()["assistant_message"]
        assert reply["content"].startswith(stopped["content"])
        assert reply["content"].endswith(" (continued) c0 c1 c2")
        assert llm.requests[-1]["messages"][-1] == {"role": "assistant",
                                                    "content": stopped["content"]}
        replies = [m for m in http.get(f"/api/conversations/{cid}/messages").json()
                   if m["role"] == "assistant"]
        assert [(r["status"], r["active"]) for r in replies] == [("stopped", False),
                                                                ("complete", True)]
        user_id = continued.json()["user_message"]["id"]
        assert http.post(f"/api/conversations/{cid}/messages/{user_id}/continue"
                         ).status_code == 422


# -- fork with other parameters -------------------------------------------------------------


def test_fork_with_other_parameters(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid, (result,) = _new(http, "be creative")
        workflow_id = result["assistant_message"]["workflow_id"]
        forked = http.post(f"/api/workflows/{workflow_id}/fork",
                           json={"start_step": 3, "params": {"temperature": 1.5}})
        assert forked.status_code == 202, forked.text
        new_id = forked.json()["workflow_id"]
        wait_until(lambda: http.get(f"/api/workflows/{new_id}").json()["status"] == "SUCCESS")
        assert llm.requests[-1]["temperature"] == 1.5
        replies = [m for m in http.get(f"/api/conversations/{cid}/messages").json()
                   if m["role"] == "assistant"]
        assert len(replies) == 2 and replies[1]["params"]["temperature"] == 1.5
        assert replies[1]["workflow_id"] == new_id
        # A new system prompt, fitted into the history from step 2.
        forked = http.post(f"/api/workflows/{workflow_id}/fork",
                           json={"start_step": 2, "params": {"system_prompt": "Be brief."}})
        new_id = forked.json()["workflow_id"]
        wait_until(lambda: http.get(f"/api/workflows/{new_id}").json()["status"] == "SUCCESS")
        assert llm.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
        for body in [{"start_step": 3, "params": {"temperature": 9}},
                     {"start_step": 3, "params": {"nope": 1}}, {"start_step": 7},
                     {"start_step": "3"}, {"params": {}}]:
            bad = http.post(f"/api/workflows/{workflow_id}/fork", json=body)
            assert bad.status_code == 422, (body, bad.text)


# -- export and import ----------------------------------------------------------------------


def test_export_json_and_markdown_and_import_back(app: InProcessApp) -> None:
    with app.client() as http:
        cid, _ = _new(http, "Plan a trip to <b>Lisbon</b>", "What about Porto?")
        http.patch(f"/api/conversations/{cid}", json={"title": "Trips",
                                                      "settings": {"temperature": 0.4}})
        exported = http.get(f"/api/conversations/{cid}/export")
        assert exported.status_code == 200
        assert "attachment" in exported.headers["content-disposition"]
        data = exported.json()
        assert data["format"] == "durable-chat/conversation" and data["version"] == 1
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"] * 2
        markdown = http.get(f"/api/conversations/{cid}/export", params={"format": "markdown"})
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert markdown.text.startswith("# Trips")
        assert "Plan a trip to <b>Lisbon</b>" in markdown.text
        assert "What about Porto?" in markdown.text
        assert http.get(f"/api/conversations/{cid}/export",
                        params={"format": "pdf"}).status_code == 422

        imported = http.post("/api/conversations/import", json=data)
        assert imported.status_code == 201, imported.text
        new = imported.json()
        assert new["id"] != cid and new["title"] == "Trips"
        assert new["settings"] == {"temperature": 0.4}
        copy = http.get(f"/api/conversations/{new['id']}/messages").json()
        original = http.get(f"/api/conversations/{cid}/messages").json()
        kept = ("role", "content", "status", "model", "prompt_tokens", "completion_tokens",
                "tokens_estimated", "ttft_ms", "latency_ms", "finish_reason", "params",
                "active", "created_at", "completed_at")
        assert [[m.get(k) for k in kept] for m in copy] == \
            [[m.get(k) for k in kept] for m in original]
        assert all(m["completion_tokens"] and m["latency_ms"] for m in copy
                   if m["role"] == "assistant")
        # The imported conversation goes on like any other.
        more = http.post(f"/api/conversations/{new['id']}/messages", json={"content": "next"})
        assert more.json()["user_message"]["seq"] == 3


def _valid_export() -> dict[str, Any]:
    return {"format": "durable-chat/conversation", "version": 1,
            "conversation": {"title": "t"},
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize("mutate,status,words", [
    (lambda d: d.update(format="other"), 422, "not a conversation export"),
    (lambda d: d.update(version=99), 422, "version"),
    (lambda d: d.update(messages="nope"), 422, "list"),
    (lambda d: d.update(messages=[]), 422, "no messages"),
    (lambda d: d["messages"].insert(0, {"role": "assistant", "content": "orphan"}), 422,
     "must follow"),
    (lambda d: d["messages"].append({"role": "system", "content": "x"}), 422, "role"),
    (lambda d: d["messages"][0].update(content="a\x00b"), 422, "NUL"),
    (lambda d: d["messages"][0].update(content=""), 422, "empty"),
    (lambda d: d["messages"][0].update(content=["x"]), 422, "string"),
    (lambda d: d["messages"][0].update(created_at="yesterday"), 422, "ISO 8601"),
    (lambda d: d["messages"][1].update(status="streaming"), 422, "status"),
    (lambda d: d["conversation"].update(settings={"temperature": 5}), 422, "temperature"),
    (lambda d: d["messages"][1].update(params={"note": "a\x00b"}), 422, "NUL"),
    (lambda d: d["messages"][1].update(params={"a\x00": 1}), 422, "NUL"),
    (lambda d: d["messages"][1].update(params={"t": float("nan")}), 422, "params"),
    (lambda d: d["messages"][1].update(params={"t": [float("inf")]}), 422, "params"),
    (lambda d: d.update(messages=[{"role": "user", "content": "x"}] * 20_001), 422, "limit"),
    (lambda d: d["messages"][1].update(prompt_tokens=10_000_000_000), 422, "prompt_tokens"),
    (lambda d: d["messages"][1].update(completion_tokens=-1), 422, "completion_tokens"),
    (lambda d: d["messages"][1].update(completion_tokens=1.5), 422, "whole"),
    (lambda d: d["messages"][1].update(ttft_ms="fast"), 422, "ttft_ms"),
    (lambda d: d["messages"][1].update(latency_ms=float("inf")), 422, "latency_ms"),
    (lambda d: d["messages"][1].update(tokens_estimated="yes"), 422, "tokens_estimated"),
    (lambda d: d["messages"][1].update(finish_reason=5), 422, "finish_reason"),
    (lambda d: d["messages"][1].update(completed_at="soon"), 422, "completed_at"),
])
def test_hostile_imports_change_nothing(app: InProcessApp, mutate: Any, status: int,
                                        words: str) -> None:
    data = _valid_export()
    mutate(data)
    before = (_count(app, "conversations"), _count(app, "messages"))
    with app.client() as http:
        # json.dumps writes NaN and Infinity as JavaScript does; httpx's json= refuses them.
        bad = http.post("/api/conversations/import", content=json.dumps(data),
                        headers={"content-type": "application/json"})
    assert bad.status_code == status and words in bad.json()["error"], bad.text
    assert (_count(app, "conversations"), _count(app, "messages")) == before


def test_import_of_a_reply_stopped_before_the_model_was_known(app: InProcessApp) -> None:
    data = _valid_export()
    data["messages"][1].update(status="stopped", content="", model="", finish_reason="")
    with app.client() as http:
        imported = http.post("/api/conversations/import", json=data)
        assert imported.status_code == 201, imported.text
        reply = http.get(f"/api/conversations/{imported.json()['id']}/messages").json()[1]
    assert (reply["status"], reply["model"], reply["finish_reason"]) == ("stopped", None, None)


def test_malformed_and_oversized_import_files(app: InProcessApp) -> None:
    before = _count(app, "conversations")
    with app.client() as http:
        assert http.post("/api/conversations/import", content=b"{not json",
                         headers={"content-type": "application/json"}).status_code == 400
        huge = json.dumps({**_valid_export(), "pad": "x" * 11_000_000}).encode()
        assert http.post("/api/conversations/import", content=huge,
                         headers={"content-type": "application/json"}).status_code == 413
        assert http.post("/api/conversations/import", json=[1, 2]).status_code == 422
    assert _count(app, "conversations") == before
