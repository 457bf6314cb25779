"""The analytics API: DataFrames of conversations, messages, turns and steps, and the exact
request of a turn, from the database the app wrote; on DATABASE_URL here, on the embedded one in
tests/test_embedded_database.py."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from chat_core.accounts.person import LOCAL, Person
from chat_core.data.analytics import Analytics
from chat_core.states import COMPLETE
from chat_core.testing.emulated_llm import EmulatedLLM
from tests.helpers import InProcessApp, create_database, drop_database, query


@pytest.mark.slow  # the real app
def test_frames_reflect_what_happened(app: InProcessApp, llm: EmulatedLLM) -> None:
    with app.client() as http:
        cid = http.post("/api/conversations").json()["id"]
        http.patch(f"/api/conversations/{cid}", json={"settings": {"temperature": 0.3}})
        llm.script({"action": "error", "status": 503})
        first = http.post(f"/api/conversations/{cid}/messages",
                          json={"content": "analyse me"}).json()
        http.post(f"/api/conversations/{cid}/messages", json={"content": "and me"})
    workflow_id = first["assistant_message"]["workflow_id"]
    with Analytics.connect(app.settings.database_url) as data:
        conversations = data.conversations()
        row = conversations.set_index(conversations.id.astype(str)).loc[cid]
        assert (row.user_messages, row.replies) == (2, 2)
        replies = data.messages(role="assistant", conversation_id=cid)
        assert list(replies.temperature) == [0.3, 0.3]
        assert list(replies.llm_attempts) == [2, 1]  # the 503 was retried
        assert (replies.tokens_per_sec > 0).all() and (replies.ttft_ms > 0).all()
        turns = data.turns().set_index("workflow_id")
        assert turns.loc[workflow_id, "status"] == "SUCCESS"
        assert turns.loc[workflow_id, "llm_attempts"] == 2
        assert turns.loc[workflow_id, "recoveries"] == 0
        steps = data.steps([workflow_id])
        assert list(steps.name) == ["save_user_message", "read_history", "call_llm",
                                    "save_reply"]
        assert (steps.duration_ms >= 0).all()
        request = data.turn_request(workflow_id)
        assert request["messages"] == [{"role": "user", "content": "analyse me"}]
        assert request["temperature"] == 0.3
        with pytest.raises(LookupError):
            data.turn_request("turn-nope")
        assert data.messages(since="2999-01-01").empty


# The embedded database is read too: tests/test_embedded_database.py, at the end of its app's
# run (an app with its own PostgreSQL costs an initdb; one such run serves both).


def test_an_empty_database_says_what_to_do() -> None:
    url = create_database("chat_empty")
    try:
        with pytest.raises(RuntimeError, match="run the app"):
            Analytics.connect(url)
    finally:
        drop_database(url)


# -- owners and consent ------------------------------------------------------------------------

def _account(url: str, name: str, consented: bool) -> uuid.UUID:
    account = uuid.uuid4()
    query(url, "INSERT INTO accounts (id, name, name_key, source, consent_at) VALUES"
               " (%s, %s, %s, 'config', CASE WHEN %s THEN now() END) RETURNING id",
          (account, name, f"{name}-{account}", consented))
    return account


def _conversation(url: str, owner: uuid.UUID | None, text: str) -> str:
    """A conversation with one user message, written as the store would (owner_id or NULL)."""
    cid = uuid.uuid4()
    query(url, "INSERT INTO conversations (id, title, owner_id) VALUES (%s, %s, %s)"
               " RETURNING id",
          (cid, text, owner))
    query(url, "INSERT INTO messages (id, conversation_id, seq, role, content, status,"
               " workflow_id) VALUES (%s, %s, 1, 'user', %s, %s, %s) RETURNING id",
          (uuid.uuid4(), cid, text, COMPLETE, f"turn-{uuid.uuid4()}"))
    return str(cid)


def _owners(frame: pd.DataFrame, ids: dict[str, str], column: str = "id") -> dict[str, str]:
    """Which of our conversations a frame holds, by label, with the owner it names."""
    labels = {cid: label for label, cid in ids.items()}
    return {labels[str(cid)]: owner for cid, owner in zip(frame[column], frame["owner"])
            if str(cid) in labels}


def test_frames_name_owners_and_keep_only_consenting_people_when_asked(
        migrated_database_url: str) -> None:
    url = migrated_database_url
    ann, bob = _account(url, "ann", consented=True), _account(url, "bob", consented=False)
    ids = {"ann": _conversation(url, ann, "ann's words"),
           "bob": _conversation(url, bob, "bob's words"),
           "host": _conversation(url, None, "the host's words")}
    everyone = Analytics(url)  # connect() would also check for DBOS's tables: not needed here
    assert _owners(everyone.conversations(), ids) == {"ann": "ann", "bob": "bob",
                                                       "host": LOCAL.name}
    assert _owners(everyone.messages(), ids, "conversation_id") == {
        "ann": "ann", "bob": "bob", "host": LOCAL.name}

    consenting = Analytics(url, consented_only=True)
    assert _owners(consenting.conversations(), ids) == {"ann": "ann", "host": LOCAL.name}
    messages = consenting.messages()
    assert _owners(messages, ids, "conversation_id") == {"ann": "ann", "host": LOCAL.name}
    assert "bob's words" not in set(messages.content)
    assert consenting.messages(conversation_id=ids["bob"]).empty

    query(url, "UPDATE accounts SET consent_at = NULL, withdrawn_at = now() WHERE id = %s"
               " RETURNING id",
          (ann,))  # what withdrawing consent leaves
    assert _owners(consenting.conversations(), ids) == {"host": LOCAL.name}
    assert _owners(everyone.conversations(), ids) == {"ann": "ann", "bob": "bob",
                                                       "host": LOCAL.name}


@pytest.mark.slow  # the real app
def test_turns_steps_and_requests_follow_the_consent_filter(app: InProcessApp) -> None:
    assert app.service is not None
    url = app.settings.database_url
    people = {name: Person(_account(url, name, consented=name == "ann"), name)
              for name in ("ann", "bob")}
    turns = {}
    for name, person in people.items():
        service = app.service.for_person(person)
        cid = app.call(service.create_conversation())["id"]
        turns[name] = app.call(service.send_message(cid, f"{name} asks"))[
            "assistant_message"]["workflow_id"]
    with Analytics.connect(url) as everyone:
        frame = everyone.turns().set_index("workflow_id")
        assert frame.loc[turns["ann"], "owner"] == "ann"
        assert frame.loc[turns["bob"], "owner"] == "bob"
    with Analytics.connect(url, consented_only=True) as data:
        shown = set(data.turns().workflow_id)
        assert turns["ann"] in shown and turns["bob"] not in shown
        assert set(data.steps().workflow_id) <= shown
        assert set(data.steps(list(turns.values())).workflow_id) == {turns["ann"]}
        assert data.turn_request(turns["ann"])["messages"][-1]["content"] == "ann asks"
        with pytest.raises(LookupError):
            data.turn_request(turns["bob"])
