"""Comparisons through the REST API, on two emulated LLM servers: a blind comparison names no
model on any surface until its vote (each response is read for the names), the vote reveals
them and moves the leaderboard, both sides go on, and bad input changes nothing.

One in-process app for the module."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any, Iterator

import httpx
import pytest

from chat_core.accounts.person import Person
from chat_core.comparisons import service as comparison_service
from chat_core.errors import NotFound, TooManyTurns
from chat_core.testing.emulated_llm import EmulatedLLM, EmulatorSettings
from tests.helpers import InProcessApp, app_on, emulated_servers, query

pytestmark = pytest.mark.slow

ALPHA, BETA = "cmp-alpha-7b", "cmp-beta-13b"
NAMES = (ALPHA, BETA, "alpha-7b", "beta-13b")


@pytest.fixture(scope="module")
def servers() -> Iterator[list[EmulatedLLM]]:
    with emulated_servers(EmulatorSettings(model=ALPHA),
                          EmulatorSettings(model=BETA, max_model_len=2048)) as started:
        yield started


@pytest.fixture(scope="module")
def app(database_url: str, servers: list[EmulatedLLM],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    with app_on(database_url, [s.base_url for s in servers],
                tmp_path_factory.mktemp("comparisons")) as running:
        yield running


@pytest.fixture(autouse=True)
def _sides_in_the_order_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blind sides are shown in a random order; these tests ask for the order they read
    (test_blind_sides_are_shown_in_a_random_order checks the other)."""
    monkeypatch.setattr(comparison_service, "_coin", lambda: 0)


def _blind_body(content: str = "Which is better?") -> dict[str, Any]:
    return {"content": content, "a": {"model": ALPHA}, "b": {"model": BETA}, "blind": True}


def _without_ids(text: str) -> str:
    return re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT[\d:.]+Z", "<id>",
                  text)


def _names_in(text: str) -> list[str]:
    return [name for name in NAMES if name.lower() in text.lower()]


def _every_surface(http: httpx.Client, comparison: dict[str, Any]) -> dict[str, str]:
    """What each surface a person can read answers, about this comparison and its turns."""
    cid = comparison["id"]
    sides = comparison["sides"]
    turns = [m["workflow_id"] for s in sides.values() for m in s["messages"]
             if m["role"] == "assistant"]
    listed = [c for c in http.get("/api/comparisons").json() if c["id"] == cid]
    assert len(listed) == 1
    seen = {"comparison": http.get(f"/api/comparisons/{cid}").text,
            "comparisons": json.dumps(listed),
            "conversations": http.get("/api/conversations").text,
            "search": http.get("/api/conversations", params={"q": "better"}).text,
            "workflows": http.get("/api/workflows").text}
    for side in ("a", "b"):
        conversation = sides[side]["conversation_id"]
        for path in ("", "/messages", "/export", "/export?format=markdown"):
            seen[f"{side}{path}"] = http.get(f"/api/conversations/{conversation}{path}").text
    ids = [sides[side]["conversation_id"] for side in ("a", "b")]
    prompt = sides["a"]["messages"][0]["content"]
    for fmt in ("openai", "sharegpt", "preference"):
        # Other (voted) comparisons' sides are in the dataset, named: only this one's lines.
        lines = http.get("/api/dataset", params={"format": fmt}).text.splitlines()
        seen[fmt] = "\n".join(line for line in lines
                              if any(i in line for i in ids) or prompt in line)
    for turn in turns:
        seen[turn] = http.get(f"/api/workflows/{turn}").text
        seen[f"{turn}/steps"] = http.get(f"/api/workflows/{turn}/steps").text
        seen[f"{turn}/events"] = http.get(f"/api/turns/{turn}/events").text
    return seen


def _forget_live_progress(app: InProcessApp) -> None:
    assert app.service is not None
    hub = app.service.hub

    async def forget() -> None:
        for turn_id in list(hub._turns):
            progress = hub.get(turn_id)
            if progress is not None and progress.snapshot().finished:
                hub._forget(turn_id, progress)
    app.call(forget())


def test_a_blind_comparison_names_no_model_anywhere_until_the_vote(app: InProcessApp) -> None:
    with app.client() as http:
        created = http.post("/api/comparisons", json=_blind_body("Which is better, tea?"))
        assert created.status_code == 200, created.text
        assert _names_in(created.text) == []
        comparison = created.json()["comparison"]
        _forget_live_progress(app)  # re-attaching reads the database, as after a restart
        assert [comparison["sides"][s]["name"] for s in "ab"] == ["Model A", "Model B"]
        replies = [comparison["sides"][s]["messages"][-1] for s in "ab"]
        assert [r["status"] for r in replies] == ["complete", "complete"]
        assert all(r["content"].startswith("Reply to [Which is better, tea?]") for r in replies)
        # Nothing that tells a model or a setting apart: no parameters, counts or timings.
        assert [sorted(set(r) & {"params", "prompt_tokens", "ttft_ms", "latency_ms"})
                for r in replies] == [[], []]
        fork = http.post(f"/api/workflows/{replies[1]['workflow_id']}/fork",
                         json={"start_step": 3, "params": {"temperature": 0.0}})
        assert fork.status_code == 409 and "vote first" in fork.json()["error"]
        # Every surface: none names a model; the sides are not among the conversations.
        surfaces = _every_surface(http, comparison)
        leaks = {where: _names_in(text) for where, text in surfaces.items() if _names_in(text)}
        assert leaks == {}
        # Its own turns re-attach like any other (the final state), and show in the Workflows.
        for reply in replies:
            events = surfaces[f"{reply['workflow_id']}/events"]
            assert "event: done" in events and '"complete"' in events, events
            assert reply["workflow_id"] in surfaces["workflows"]
        conversations = http.get("/api/conversations").json()
        sides = {comparison["sides"][s]["conversation_id"] for s in "ab"}
        assert sides.isdisjoint({c["id"] for c in conversations})
        assert http.get(f"/api/conversations/{sides.pop()}/messages").status_code == 404

        voted = http.post(f"/api/comparisons/{comparison['id']}/vote", json={"winner": "a"})
        assert voted.status_code == 200, voted.text
        shown = voted.json()
        assert shown["revealed"] and shown["winner"] == "a"
        assert (shown["sides"]["a"]["name"], shown["sides"]["b"]["name"]) == (ALPHA, BETA)
        assert shown["sides"]["b"]["messages"][-1]["model"] == BETA
        # Now the side conversations answer like any other.
        side_b = shown["sides"]["b"]["conversation_id"]
        assert http.get(f"/api/conversations/{side_b}/messages").json()[-1]["model"] == BETA
        assert shown["sides"]["b"]["messages"][-1]["params"]["temperature"] is not None
        forked = http.post(f"/api/workflows/{replies[1]['workflow_id']}/fork",
                           json={"start_step": 3})
        assert forked.status_code == 202
        # Followed to its end, so its LLM call is not counted by the next test.
        assert "event: done" in http.get(
            f"/api/turns/{forked.json()['workflow_id']}/events").text
        again = http.post(f"/api/comparisons/{comparison['id']}/vote", json={"winner": "b"})
        assert again.status_code == 409 and "already" in again.json()["error"]
        assert http.get(f"/api/comparisons/{comparison['id']}").json()["winner"] == "a"


def _events(response: httpx.Response) -> list[tuple[str, Any]]:
    out = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_both_replies_stream_side_by_side_and_go_on_in_both(
        app: InProcessApp, servers: list[EmulatedLLM]) -> None:
    with app.client() as http:
        streamed = http.post("/api/comparisons", params={"stream": "true"},
                             json=_blind_body("Stream us both"))
        assert streamed.status_code == 200
        assert _names_in(streamed.text) == []
        events = _events(streamed)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "round" and kinds[-1] == "comparison"
        text = {side: "".join(d["text"] for k, d in events if k == "delta" and d["side"] == side)
                for side in "ab"}
        assert all(t.startswith("Reply to [Stream us both]") for t in text.values())
        assert sorted(d["side"] for k, d in events if k == "done") == ["a", "b"]
        comparison = events[-1][1]

        servers[0].requests.clear()
        servers[1].requests.clear()
        more = http.post(f"/api/comparisons/{comparison['id']}/messages",
                         json={"content": "And then?"})
        assert more.status_code == 200, more.text
        sides = more.json()["comparison"]["sides"]
        for side, server in zip("ab", servers):
            # Each side answered from its own history, by its own server.
            assert [m["role"] for m in sides[side]["messages"]] == ["user", "assistant"] * 2
            assert server.user_messages_seen() == ["And then?"]
            sent = server.requests[-1]["messages"]
            assert sent[-2]["content"] == text[side]


def test_the_leaderboard_counts_the_votes(app: InProcessApp) -> None:
    with app.client() as http:
        before = {c["name"]: c for c in http.get("/api/leaderboard").json()["contenders"]}
        for winner in ("b", "b", "tie"):
            cid = http.post("/api/comparisons", json=_blind_body()).json()["comparison"]["id"]
            assert http.post(f"/api/comparisons/{cid}/vote",
                             json={"winner": winner}).status_code == 200
        board = http.get("/api/leaderboard").json()
    after = {c["name"]: c for c in board["contenders"]}
    for name, battles in ((ALPHA, 3), (BETA, 3)):
        assert after[name]["battles"] - before.get(name, {"battles": 0})["battles"] == battles
    assert after[BETA]["wins"] - before.get(BETA, {"wins": 0})["wins"] == 2
    for c in board["contenders"]:
        assert c["ci_low"] <= c["rating"] <= c["ci_high"]


def test_named_settings_of_one_model_are_compared_by_their_labels(app: InProcessApp) -> None:
    body = {"content": "Be brief", "blind": False,
            "a": {"model": ALPHA, "settings": {"temperature": 0.1}, "label": "cold"},
            "b": {"model": ALPHA, "settings": {"temperature": 1.5}, "label": "hot"}}
    with app.client() as http:
        created = http.post("/api/comparisons", json=body)
        assert created.status_code == 200, created.text
        comparison = created.json()["comparison"]
        assert comparison["revealed"] and comparison["sides"]["a"]["name"] == "cold"
        replies = [comparison["sides"][s]["messages"][-1] for s in "ab"]
        assert [r["params"]["temperature"] for r in replies] == [0.1, 1.5]
        http.post(f"/api/comparisons/{comparison['id']}/vote", json={"winner": "b"})
        names = {c["name"] for c in http.get("/api/leaderboard").json()["contenders"]}
    assert {"cold", "hot"} <= names


def test_a_blind_sides_error_text_names_no_model(
        app: InProcessApp, servers: list[EmulatedLLM]) -> None:
    servers[1].settings.script.append({"action": "error", "status": 400,
                                       "message": f"{BETA} refuses: ask {ALPHA} instead"})
    with app.client() as http:
        created = http.post("/api/comparisons", json=_blind_body("Refuse me"))
        assert created.status_code == 200, created.text
        comparison = created.json()["comparison"]
        failed = comparison["sides"]["b"]["messages"][-1]
        assert failed["status"] == "error"
        # Not the server's text (its address, model, window would tell): that it failed.
        assert failed["error"].startswith("Model B could not answer") and \
            "refuses" not in failed["error"] and "127.0.0.1" not in failed["error"]
        leaks = {where: _names_in(text) for where, text in _every_surface(http, comparison).items()
                 if _names_in(text)}
        assert leaks == {}
        # A side that failed can still be judged ("both bad", or the other better).
        assert http.post(f"/api/comparisons/{comparison['id']}/vote",
                         json={"winner": "a"}).status_code == 200


def test_the_same_idempotency_key_gives_the_same_comparison_once(
        app: InProcessApp, servers: list[EmulatedLLM]) -> None:
    servers[0].requests.clear()
    key = {"Idempotency-Key": f"cmp-{uuid.uuid4()}"}
    with app.client() as http:
        first = http.post("/api/comparisons", json=_blind_body("Once"), headers=key).json()
        second = http.post("/api/comparisons", json=_blind_body("Once"), headers=key).json()
        assert first["comparison"]["id"] == second["comparison"]["id"]
        assert first["round"] == second["round"]
        assert servers[0].user_messages_seen() == ["Once"]
        other = http.post("/api/comparisons", json=_blind_body("Other text"), headers=key)
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]
        for changed in ({**_blind_body("Once"), "blind": False},
                        {**_blind_body("Once"), "b": {"model": BETA,
                                                      "settings": {"temperature": 1.9}}}):
            refused = http.post("/api/comparisons", json=changed, headers=key)
            assert refused.status_code == 422 and "Idempotency-Key" in refused.json()["error"]
        assert servers[0].user_messages_seen() == ["Once"]


@pytest.mark.parametrize("body, status, words", [
    ({"content": "x", "a": {"model": "gpt-9"}, "b": {"model": BETA}}, 422, "'gpt-9'"),
    ({"content": "x", "a": {"model": ALPHA}, "b": {"model": ALPHA}}, 422, "the same"),
    ({"content": "x", "a": {"model": ALPHA, "settings": {"temperature": 0.5}},
      "b": {"settings": {"model": ALPHA, "temperature": 0.5}}}, 422, "the same"),
    ({"content": "x", "a": {"model": ALPHA, "label": "L"},
      "b": {"model": BETA, "label": "L"}}, 422, "same label"),
    ({"content": "", "a": {"model": ALPHA}, "b": {"model": BETA}}, 422, "content"),
    ({"a": {"model": ALPHA}, "b": {"model": BETA}}, 422, "content"),
    ({"content": "x", "a": "model-a", "b": {"model": BETA}}, 422, "side 'a'"),
    ({"content": "x", "a": {"modle": ALPHA}, "b": {"model": BETA}}, 422, "'modle'"),
    ({"content": "x", "a": {"model": ALPHA}, "b": {"model": BETA}, "blind": "yes"}, 422,
     "blind"),
    ({"content": "x", "a": {"model": ALPHA}, "b": {"model": BETA, "settings": {"top_p": 0}}},
     422, "top_p"),
    ({"content": "x", "c": {}}, 422, "'c'"),
    ({"content": "x", "a": {"model": ALPHA, "label": BETA}, "b": {"model": ALPHA,
      "settings": {"temperature": 1.2}}}, 422, "name of a model"),
    ({"content": "x", "a": {"model": ALPHA, "label": "model b"}, "b": {"model": BETA}}, 422,
     "name of a model"),
])
def test_bad_comparisons_are_refused_and_create_nothing(
        app: InProcessApp, body: dict[str, Any], status: int, words: str) -> None:
    with app.client() as http:
        before = http.get("/api/comparisons").json()
        answer = http.post("/api/comparisons", json=body)
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]
        assert http.get("/api/comparisons").json() == before


def test_bad_votes_and_unknown_comparisons(app: InProcessApp) -> None:
    missing = str(uuid.uuid4())
    with app.client() as http:
        cid = http.post("/api/comparisons", json=_blind_body()).json()["comparison"]["id"]
        bad = http.post(f"/api/comparisons/{cid}/vote", json={"winner": "c"})
        assert bad.status_code == 422 and "winner" in bad.json()["error"]
        assert http.post(f"/api/comparisons/{cid}/vote", json={}).status_code == 422
        assert http.get(f"/api/comparisons/{cid}").json()["winner"] is None
        for path in (f"/api/comparisons/{missing}", "/api/comparisons/not-an-id"):
            assert http.get(path).status_code == 404
        assert http.post(f"/api/comparisons/{missing}/vote",
                         json={"winner": "a"}).status_code == 404
        assert http.post(f"/api/comparisons/{missing}/messages",
                         json={"content": "hi"}).status_code == 404
        assert http.get("/api/comparisons", params={"limit": "0"}).status_code == 422
    # Someone else's comparison answers exactly like a missing one, in the store's scope.
    service = app.service
    assert service is not None
    stranger = service.for_person(Person(uuid.uuid4(), "stranger"))
    for call in (stranger.comparisons().get(cid), stranger.comparisons().get(missing),
                 stranger.comparisons().vote(cid, "a"),
                 stranger.comparisons().send(cid, "hello")):
        with pytest.raises(NotFound) as caught:
            app.call(call)
        assert "does not exist" in caught.value.message
    assert app.call(stranger.comparisons().list()) == []


def test_blind_sides_are_shown_in_a_random_order(app: InProcessApp,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever chose the models must not know which is "Model A": the coin turns them."""
    monkeypatch.setattr(comparison_service, "_coin", lambda: 1)
    with app.client() as http:
        blind = http.post("/api/comparisons", json=_blind_body("Turned")).json()["comparison"]
        named = http.post("/api/comparisons",
                          json={**_blind_body("Not turned"), "blind": False}).json()["comparison"]
        shown = http.post(f"/api/comparisons/{blind['id']}/vote", json={"winner": "a"}).json()
    assert (shown["sides"]["a"]["model"], shown["sides"]["b"]["model"]) == (BETA, ALPHA)
    assert (named["sides"]["a"]["model"], named["sides"]["b"]["model"]) == (ALPHA, BETA)
    # The vote counts for the model that was shown as A.
    assert query(app.settings.database_url or "", "SELECT winner, model_a FROM comparisons"
                 " WHERE id = %s", (blind["id"],)) == [("a", BETA)]


def test_a_prompt_too_long_for_one_side_fails_that_side_only(app: InProcessApp) -> None:
    long_text = "word " * 2500  # about 3,000 tokens: more than BETA's 2,048
    with app.client() as http:
        created = http.post("/api/comparisons", json=_blind_body(long_text))
        assert created.status_code == 200, created.text
        sides = created.json()["comparison"]["sides"]
        assert sides["a"]["messages"][-1]["status"] == "complete"
        failed = sides["b"]["messages"][-1]
        assert failed["status"] == "error"  # recorded, not left pending
        assert failed["error"].startswith("Model B could not answer")
        # (ids and timestamps left out: a random id can hold those digits)
        assert "2048" not in _without_ids(created.text) and _names_in(created.text) == []
        cid = created.json()["comparison"]["id"]
        assert http.post(f"/api/comparisons/{cid}/vote", json={"winner": "a"}).status_code == 200
        plain = http.post("/api/conversations").json()["id"]
        http.patch(f"/api/conversations/{plain}", json={"settings": {"model": BETA}})
        answer = http.post(f"/api/conversations/{plain}/messages", json={"content": long_text})
        assert answer.status_code == 502 and "context window" in answer.json()["error"]
        rows = http.get(f"/api/conversations/{plain}/messages").json()
        assert [m["status"] for m in rows] == ["complete", "error"]


def test_a_comparison_can_be_deleted_by_its_owner(app: InProcessApp) -> None:
    with app.client() as http:
        comparison = http.post("/api/comparisons", json=_blind_body("Delete me")).json()
        cid = comparison["comparison"]["id"]
        service = app.service
        assert service is not None
        stranger = service.for_person(Person(uuid.uuid4(), "stranger"))
        with pytest.raises(NotFound):
            app.call(stranger.comparisons().delete(cid))
        deleted = http.delete(f"/api/comparisons/{cid}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] == cid
        assert http.get(f"/api/comparisons/{cid}").status_code == 404
        assert http.delete(f"/api/comparisons/{cid}").status_code == 404
    sides = [comparison["comparison"]["sides"][s]["conversation_id"] for s in "ab"]
    assert query(app.settings.database_url or "", "SELECT count(*) FROM conversations"
                 " WHERE id = ANY(%s::uuid[])", (sides,)) == [(0,)]


def test_a_round_over_the_persons_limit_leaves_nothing_behind(app: InProcessApp) -> None:
    """Both sides are admitted or neither: with room for one more reply, a comparison (two)
    is refused, and no half-made comparison or counted turn stays."""
    url = app.settings.database_url or ""
    account = uuid.uuid4()
    query(url, "INSERT INTO accounts (id, name, name_key, source) VALUES (%s, %s, %s, 'config')"
          " RETURNING id", (account, f"limited-{account.hex[:6]}", f"limited-{account.hex}"))
    service = app.service
    assert service is not None
    person = service.for_person(Person(account, "limited"))
    person.settings = dataclasses.replace(person.settings, share_max_in_flight=1)
    with pytest.raises(TooManyTurns):
        app.call(person.comparisons().create("Two at once", {"model": ALPHA}, {"model": BETA}))
    assert app.call(person.comparisons().list()) == []
    assert query(url, "SELECT count(*) FROM turn_admissions WHERE owner_id = %s",
                 (account,)) == [(0,)]
    assert query(url, "SELECT count(*) FROM comparisons WHERE owner_id = %s", (account,)) == [(0,)]
