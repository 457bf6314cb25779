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
    # Whether a blind comparison's sides (sealed conversations, migrations/009) are in view:
    # only for the turn workflows and the comparison service, which masks the names.
    sees_sealed: bool = False

    @property
    def sees_all(self) -> bool:
        """Admins (and the local person) see and steer everyone's data."""
        return self.is_admin

    @property
    def key(self) -> str:
        """The person as a string: the owner recorded with a turn ("" without accounts)."""
        return "" if self.id is None else str(self.id)

    def sql(self) -> dict[str, Any]:
        """Parameters of the store's ownership clause: %(owner)s, %(sees_all)s and
        %(sees_sealed)s."""
        return {"owner": self.id, "sees_all": self.sees_all, "sees_sealed": self.sees_sealed}


# Local mode: one person, no login, everything is theirs (rows keep owner_id NULL).
LOCAL = Person(None, "local", is_admin=True)
# The turn workflows: they act on rows a person's request already reached through its scope.
SYSTEM = Person(None, "system", is_admin=True, sees_sealed=True)
