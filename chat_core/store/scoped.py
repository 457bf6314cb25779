"""What every store of a person's data shares: the person whose view it answers for."""

from __future__ import annotations

from typing import Any

from chat_core.accounts.person import SYSTEM, Person
from chat_core.store.database import Database


class PersonScoped:
    """A store that answers only what `person` may see (SYSTEM: everything; an admin:
    everyone's). Every query takes the person's parameters through `_p`, for the ownership
    clauses of chat_store.py (docs/architecture.md, "Who owns what")."""

    def __init__(self, db: Database, person: Person = SYSTEM) -> None:
        self.db = db
        self.person = person

    def _p(self, **params: Any) -> dict[str, Any]:
        return {**params, **self.person.sql()}
