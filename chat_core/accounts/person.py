"""Who is asking: the value every scoped store query and service call is made for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Person:
    """A person the app serves. `id` is None only for the local person (no accounts: one
    person, who sees everything) and the system (the turn workflows themselves)."""

    id: uuid.UUID | None
    name: str
    is_admin: bool = False

    @property
    def sees_all(self) -> bool:
        """Admins (and the local person) see and steer everyone's data."""
        return self.is_admin

    @property
    def key(self) -> str:
        """The person as a string: the owner recorded with a turn ("" without accounts)."""
        return "" if self.id is None else str(self.id)

    def sql(self) -> dict[str, Any]:
        """Parameters of the store's ownership clause: %(owner)s and %(sees_all)s."""
        return {"owner": self.id, "sees_all": self.sees_all}


# Local mode: one person, no login, everything is theirs (rows keep owner_id NULL).
LOCAL = Person(None, "local", is_admin=True)
# The turn workflows: they act on rows a person's request already reached through its scope.
SYSTEM = Person(None, "system", is_admin=True)
