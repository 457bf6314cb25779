"""The dataset export, fast: the pure functions of chat_core/data/dataset_export.py on rows made
here, then GET /api/dataset on the real service and a PostgreSQL database of this module's own
(the World of tests/test_ratings.py: accounts on, DBOS stood in for, the REST routes on an ASGI
transport).

What a researcher notices: every line parses; roles are right; only the replies that were shown
are in a conversation; preference pairs come from a liked and a disliked reply to one message
and from the alternative chosen; the filters select what they say, and a filter that is not a
date is a 400 that says so; a person gets their own, an admin everyone's who accepted the
notice, under pseudonyms; and the preference file loads with pandas and `datasets` with exactly
TRL's columns."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_core.data import dataset_export as dx
from chat_core.errors import InvalidInput, MalformedRequest
from tests.helpers import query
from tests.test_ratings import World, world  # noqa: F401 (the fixture)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


# -- rows as the store reads them ----------------------------------------------------------------

def user(seq: int, text: str, at: datetime = T0) -> dict[str, Any]:
    return {"id": f"u{seq}", "role": "user", "seq": seq, "content": text, "created_at": at,
            "status": "complete", "parent_id": None, "active": False}


def reply(seq: int, key: str, text: str, *, active: bool = False, rating: int | None = None,
          model: str = "m", status: str = "complete", system: str = "") -> dict[str, Any]:
    return {"id": key, "role": "assistant", "seq": seq, "content": text, "parent_id": f"u{seq}",
            "status": status, "active": active, "model": model, "rating": rating,
            "rating_tags": ["t"] if rating else None, "rating_comment": "",
            "params": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 64,
                       "system_prompt": system}, "created_at": T0}


CONVERSATION = {"id": "c1", "title": "Herons", "created_at": T0, "owner_id": None}


def q(fmt: str = "openai", **kwargs: Any) -> dx.DatasetQuery:
    return dx.parse_query(fmt, **kwargs)


def sample() -> list[dict[str, Any]]:
    """Two turns: the first with three alternatives (the second shown, the first disliked,
    the third liked), the second with one reply; a third turn whose reply failed."""
    return [
        user(1, "What is a heron?"),
        reply(1, "r1a", "A fish.", rating=-1, system="Be brief."),
        reply(1, "r1b", "A bird.", active=True, system="Be brief."),
        reply(1, "r1c", "A wading bird.", rating=1, system="Be brief."),
        user(2, "Where do they live?"),
        reply(2, "r2", "Near water.", active=True, system="Be brief."),
        user(3, "And?"),
        reply(3, "r3", "", status="error"),
    ]


# -- the pure functions -----------------------------------------------------------------------

def test_an_openai_line_holds_the_shown_replies_in_order() -> None:
    line = dx.conversation_line(CONVERSATION, sample(), q())
    assert line is not None
    assert line["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a heron?"},
        {"role": "assistant", "content": "A bird."},
        {"role": "user", "content": "Where do they live?"},
        {"role": "assistant", "content": "Near water."}]
    assert line["message_ids"] == [None, "u1", "r1b", "u2", "r2"]
    assert line["model"] == "m" and line["parameters"] == {"temperature": 0.5, "top_p": 0.9,
                                                           "max_tokens": 64}
    assert line["conversation_id"] == "c1" and line["created_at"] == "2026-11-30T12:00:00Z"
    assert "owner" not in line  # no accounts: nobody to name


def test_a_sharegpt_line_speaks_human_and_gpt() -> None:
    line = dx.conversation_line(CONVERSATION, sample(), q("sharegpt"))
    assert line is not None
    assert [m["from"] for m in line["conversations"]] == ["system", "human", "gpt", "human",
                                                          "gpt"]
    assert line["conversations"][2]["value"] == "A bird." and line["id"] == "c1"


def test_preference_pairs_from_ratings_and_the_chosen_alternative() -> None:
    pairs = dx.preference_pairs(sample(), q("preference"))
    got = {(p.chosen["id"], p.rejected["id"], p.source) for p in pairs}
    assert got == {("r1c", "r1a", "rating"),        # liked over disliked
                   ("r1b", "r1a", "alternative")}   # shown over the other, unless liked
    line = pairs[0].line()
    assert list(line) == list(dx.PREFERENCE_COLUMNS)
    assert line["prompt"] == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "What is a heron?"}]
    assert line["chosen"] == [{"role": "assistant", "content": "A wading bird."}]
    # The second turn's prompt holds the first turn as it was shown.
    second = [user(1, "hi"), reply(1, "a", "hello", active=True), user(2, "again"),
              reply(2, "b", "one", rating=1), reply(2, "c", "two", rating=-1, active=True)]
    [pair] = dx.preference_pairs(second, q("preference"))
    assert [m["content"] for m in pair.line()["prompt"]] == ["hi", "hello", "again"]
    assert (pair.chosen["id"], pair.rejected["id"]) == ("b", "c")  # a disliked shown reply


def test_a_stronger_source_wins_the_same_two_replies() -> None:
    """A rating outranks the chosen alternative; a vote (comparisons, later) outranks both."""
    messages = [user(1, "q"), reply(1, "a", "one", active=True, rating=-1),
                reply(1, "b", "two", rating=1)]
    [pair] = dx.preference_pairs(messages, q("preference"))
    assert (pair.chosen["id"], pair.source) == ("b", "rating")
    prompt = (("user", "q"),)
    rows = {r["id"]: r for r in messages if r["role"] == "assistant"}
    merged = dx.merge_pairs([dx.Pair(prompt, rows["b"], rows["a"], "alternative"),
                             dx.Pair(prompt, rows["a"], rows["b"], "vote"),
                             dx.Pair(prompt, rows["b"], rows["a"], "rating")])
    assert [(p.chosen["id"], p.source) for p in merged] == [("a", "vote")]


def test_a_continued_reply_is_not_preferred_to_its_own_beginning() -> None:
    messages = [user(1, "q"), reply(1, "a", "Once upon", status="stopped"),
                reply(1, "b", "Once upon a time", active=True)]
    assert dx.preference_pairs(messages, q("preference")) == []


def test_the_filters_select_what_they_say() -> None:
    rows = sample()
    assert dx.conversation_line(CONVERSATION, rows, q(model="m")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(model="other")) is None
    # min_rating: a conversation is as good as its worst shown reply (unrated counts 0).
    assert dx.conversation_line(CONVERSATION, rows, q(min_rating="0")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(min_rating=1)) is None
    assert dx.conversation_line(CONVERSATION, rows, q(since="2026-11-30")) is not None
    assert dx.conversation_line(CONVERSATION, rows, q(since="2026-11-30T12:00:01Z")) is None
    assert dx.conversation_line(CONVERSATION, rows, q(until="2026-11-30T13:00+01:00")) is None
    assert dx.conversation_line(CONVERSATION, rows, q(until="2026-12-01")) is not None
    prefs = dx.preference_pairs(rows, q("preference", min_rating=1))
    assert [(p.chosen["id"], p.source) for p in prefs] == [("r1c", "rating")]
    assert dx.preference_pairs(rows, q("preference", since="2026-12-01")) == []


@pytest.mark.parametrize("kwargs,error,words", [
    ({"fmt": "csv"}, InvalidInput, "openai, sharegpt, preference"),
    ({"fmt": "openai", "since": "yesterday"}, MalformedRequest, "ISO 8601 date"),
    ({"fmt": "openai", "until": "2026-13-40"}, MalformedRequest, "until must be"),
    ({"fmt": "openai", "since": "\ud800"}, MalformedRequest, "since must be"),
    ({"fmt": "openai", "since": "x" * 500}, MalformedRequest, "since must be"),
    ({"fmt": "openai", "since": "2026-12-01", "until": "2026-11-01"}, InvalidInput, "before"),
    ({"fmt": "openai", "min_rating": "2"}, InvalidInput, "-1, 0 or 1"),
    ({"fmt": "openai", "min_rating": True}, InvalidInput, "-1, 0 or 1"),
    ({"fmt": "openai", "model": "a\x00b"}, InvalidInput, "NUL"),
])
def test_bad_options_say_what_to_fix(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error) as raised:
        dx.parse_query(**kwargs)
    assert words in raised.value.message


def test_a_pseudonym_is_stable_and_names_nobody() -> None:
    owner = uuid.uuid4()
    conversation = {**CONVERSATION, "owner_id": owner, "owner_name": "alice"}
    line = dx.conversation_line(conversation, sample(), q(), accounts=True)
    assert line is not None and line["owner"] == dx.pseudonym(owner) != "alice"
    assert line["owner"] == dx.pseudonym(str(owner)) and line["owner"].startswith("person-")
    named = dx.conversation_line(conversation, sample(), q(pseudonyms=False), accounts=True)
    assert named is not None and named["owner"] == "alice"


# -- GET /api/dataset ---------------------------------------------------------------------------

def lines(world: World, person: Any, **params: Any) -> list[dict[str, Any]]:
    answer = world.call(person, "GET", "/api/dataset", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.text == "" or answer.text.endswith("\n")
    return [json.loads(line) for line in answer.text.splitlines()]


def rated_conversation(world: World, owner: Any, model: str) -> tuple[str, dict[str, str]]:
    """A conversation whose first message has three replies: one disliked, the shown one
    (selected), one liked; its second turn one reply; all by `model`."""
    cid = world.conversation(owner, f"about {model}")
    u1, bad = world.turn(cid, f"Q1 {model}", f"bad {model}", model, "Be brief.")
    shown = world.alternative(u1, f"shown {model}", model, "Be brief.")
    good = world.alternative(u1, f"good {model}", model, "Be brief.")
    assert world.run(world.service(owner).select_reply(cid, shown))["active"]
    _, second = world.turn(cid, f"Q2 {model}", f"second {model}", model, "Be brief.")
    service = world.service(owner)
    world.run(service.rate_reply(cid, bad, -1))
    world.run(service.rate_reply(cid, good, 1, ["helpful"], "best"))
    return cid, {"bad": bad, "shown": shown, "good": good, "second": second}


def test_the_openai_and_sharegpt_lines_of_a_person(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    cid, ids = rated_conversation(world, world.bob, model)
    [line] = [x for x in lines(world, world.bob, format="openai", model=model)]
    assert line["conversation_id"] == cid and line["model"] == model
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant", "user",
                                                     "assistant"]
    assert [m["content"] for m in line["messages"][2::2]] == [f"shown {model}",
                                                              f"second {model}"]
    assert line["message_ids"][2] == ids["shown"] and line["owner"].startswith("person-")
    assert line["ratings"] == []  # the shown replies are unrated
    [share] = lines(world, world.bob, format="sharegpt", model=model)
    assert [m["from"] for m in share["conversations"]] == ["system", "human", "gpt", "human",
                                                          "gpt"]


def test_preference_pairs_load_with_pandas_and_datasets_as_trl_reads_them(
        world: World, tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    found = lines(world, world.bob, format="preference", model=model)
    pairs = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in found}
    assert pairs == {(f"good {model}", f"bad {model}"),    # from the ratings
                     (f"shown {model}", f"bad {model}")}   # the chosen alternative
    # (good over shown is no pair: a liked alternative is not rejected, nor preferred unrated)
    for p in found:
        assert list(p) == ["prompt", "chosen", "rejected"]
        assert [m["role"] for m in p["prompt"]] == ["system", "user"]
    path = tmp_path / "preference.jsonl"
    path.write_text(world.call(world.bob, "GET", "/api/dataset", params={
        "format": "preference", "model": model}).text, encoding="utf-8")
    frame = pd.read_json(path, lines=True)
    assert list(frame.columns) == ["prompt", "chosen", "rejected"] and len(frame) == 2
    assert frame["chosen"].map(lambda m: m[0]["role"]).eq("assistant").all()
    import datasets  # requirements.txt, "# Tests"
    loaded = datasets.load_dataset("json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.column_names == ["prompt", "chosen", "rejected"] and loaded.num_rows == 2
    assert loaded[0]["prompt"][-1]["role"] == "user"


def test_the_filters_over_the_api(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    cid, _ = rated_conversation(world, world.bob, model)
    today = datetime.now(timezone.utc).date()

    def ids(**params: Any) -> list[str]:
        return [x["conversation_id"] for x in lines(world, world.bob, model=model, **params)]

    assert ids() == [cid]
    assert ids(since=str(today - timedelta(days=1))) == [cid]
    assert ids(since=str(today + timedelta(days=1))) == []
    assert ids(until=str(today)) == []
    assert ids(min_rating="0") == [cid] and ids(min_rating="1") == []
    assert lines(world, world.bob, format="preference", model=model,
                 since=str(today + timedelta(days=1))) == []
    assert lines(world, world.bob, model=model + "-other") == []


@pytest.mark.parametrize("params,status,words", [
    ({"since": "last tuesday"}, 400, "since must be an ISO 8601 date"),
    ({"until": "2026-02-30"}, 400, "until must be"),
    ({"format": "csv"}, 422, "format must be one of"),
    ({"min_rating": "5"}, 422, "min_rating must be"),
    ({"pseudonyms": "maybe"}, 422, "pseudonyms must be true or false"),
])
def test_a_bad_filter_is_a_clear_4xx_before_anything_is_sent(
        world: World, params: dict[str, str], status: int, words: str) -> None:
    answer = world.call(world.bob, "GET", "/api/dataset", params=params)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_whose_conversations_leave_and_under_what_name(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    hers, _ = rated_conversation(world, world.alice, model)
    his, _ = rated_conversation(world, world.bob, model)
    own, _ = rated_conversation(world, world.admin, model)

    def exported(person: Any, **params: Any) -> dict[str, dict[str, Any]]:
        return {x["conversation_id"]: x for x in lines(world, person, model=model, **params)}

    consent = "UPDATE accounts SET consent_at = %s WHERE id = %s RETURNING id"
    query(world.url, consent, (None, world.alice.id))
    query(world.url, consent, (datetime.now(timezone.utc), world.bob.id))
    try:
        assert set(exported(world.alice)) == {hers}  # one's own, consent or not
        assert set(exported(world.bob)) == {his}
        # The admin: their own and those who accepted the notice; not Alice, who did not.
        everyone = exported(world.admin)
        assert set(everyone) == {his, own}
        assert everyone[his]["owner"] == dx.pseudonym(world.bob.id)
        assert world.bob.name not in json.dumps(everyone)
        assert exported(world.admin, pseudonyms="false")[his]["owner"] == world.bob.name
        query(world.url, consent, (datetime.now(timezone.utc), world.alice.id))
        assert set(exported(world.admin)) == {hers, his, own}
    finally:
        query(world.url, consent, (None, world.alice.id))
        query(world.url, consent, (None, world.bob.id))


def test_a_large_export_streams_every_conversation_once(world: World) -> None:
    """More conversations than one page of the store (200): each once, oldest first. (Made
    in one statement: this test is about reading them.)"""
    model = f"m-{uuid.uuid4().hex[:6]}"
    query(world.url, """
        WITH c AS (INSERT INTO conversations (id, title, owner_id, last_seq, created_at)
                   SELECT gen_random_uuid(), 'bulk', %(owner)s, 1,
                          now() - make_interval(secs => 300 - i) FROM generate_series(1, 210) i
                   RETURNING id),
        u AS (INSERT INTO messages (id, conversation_id, seq, role, content, status)
              SELECT gen_random_uuid(), c.id, 1, 'user', 'q', 'complete' FROM c
              RETURNING id, conversation_id)
        INSERT INTO messages (id, conversation_id, seq, role, content, parent_id, status,
                              active, model)
        SELECT gen_random_uuid(), u.conversation_id, 1, 'assistant', 'a', u.id, 'complete',
               true, %(model)s FROM u RETURNING id""", {"owner": world.bob.id, "model": model})
    made = [str(r[0]) for r in query(
        world.url, "SELECT c.id FROM conversations c WHERE c.owner_id = %s AND EXISTS (SELECT 1"
        " FROM messages m WHERE m.conversation_id = c.id AND m.model = %s)"
        " ORDER BY c.created_at, c.id", (world.bob.id, model))]
    assert len(made) == 210
    got = [x["conversation_id"] for x in lines(world, world.bob, model=model)]
    assert got == made


def test_any_filter_is_lines_or_a_clear_4xx(world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    rated_conversation(world, world.bob, model)
    texts = st.one_of(st.text(max_size=30), st.sampled_from([
        "2026-11-30", "2026-11-30T10:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01",
        "1 OR 1=1", "\x00", "-1", "1", "+1", "1e23", "preference", "sharegpt", model]))
    names = ("format", "model", "since", "until", "min_rating", "pseudonyms")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=st.dictionaries(st.sampled_from(names), texts, max_size=4))
    def check(params: dict[str, str]) -> None:
        answer = world.call(world.bob, "GET", "/api/dataset", params=params)
        assert answer.status_code in (200, 400, 422), answer.text
        if answer.status_code == 200:
            for line in answer.text.splitlines():
                assert isinstance(json.loads(line), dict)
        else:
            assert answer.json()["error"] and answer.json()["code"]

    check()
