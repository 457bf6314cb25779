"""Names and passwords: the rules a person's choice must meet, and argon2id hashing.

Hashing is argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane): slow on
purpose, so a stolen table is slow to guess from, yet about 0.1 s on one core of a small
server, so a room of 100 logging in at once waits seconds, not minutes (argon2-cffi's default
of 64 MiB and 4 lanes took over 1 s on a busy 2-core machine, measured). That cost is also what
a stranger could make the server pay per guess, so callers throttle guesses before any hash
(web/login_throttle.py) and at most HASHES_AT_ONCE hashes run at a time, on threads (argon2
releases the GIL), whatever the number of requests. Hashes made with other parameters are
redone at the next login (`needs_rehash`).

Every check refuses before hashing, with a message that says what to change: an empty or
10 kB password never reaches argon2.
"""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chat_core.errors import InvalidInput
from chat_core.validation import BLANK_LETTERS

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 40
# Besides letters (with their combining marks) and decimal digits, in any script.
NAME_PUNCTUATION = " ._-"
# A bound on memory and CPU however many logins arrive at once.
HASHES_AT_ONCE = 2

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the name is unknown, so that the answer takes as long as for a real account.
_DUMMY_HASH = _hasher.hash("durable-chat: no such person")


def normalize_name(name: str) -> str:
    """The name as shown: trimmed, runs of spaces made one, composed (NFC)."""
    return " ".join(part for part in unicodedata.normalize("NFC", name).split(" ") if part)


def name_key(name: str) -> str:
    """What makes two names the same person's: NFKC and case folding, so "Ann", "ann" and
    fullwidth "ＡＮＮ" are one name (Unicode's NFKC_Casefold, in the way Python spells it)."""
    folded = unicodedata.normalize("NFKC", normalize_name(name)).casefold()
    return unicodedata.normalize("NFKC", folded)


# Invisible in a name shown to others: variation selectors, the combining grapheme joiner,
# Mongolian free variation selectors and the Hangul fillers (letters Unicode draws as nothing).
_INVISIBLE = frozenset("\u034f\u180b\u180c\u180d\u180f") | BLANK_LETTERS | \
    frozenset(chr(c) for c in range(0xFE00, 0xFE10)) | \
    frozenset(chr(c) for c in range(0xE0100, 0xE01F0))
# Scripts that one name may mix (Japanese writes Han, Hiragana and Katakana together).
_MIXABLE = frozenset({"CJK", "HIRAGANA", "KATAKANA"})


def _name_char_ok(ch: str) -> bool:
    category = unicodedata.category(ch)
    return (category[0] in "LM" or category == "Nd" or ch in NAME_PUNCTUATION) \
        and ch not in _INVISIBLE


def _scripts(name: str) -> set[str]:
    """The scripts of a name's letters, by the first word of each letter's Unicode name
    (LATIN, CYRILLIC, GREEK...): "аlice" with a Cyrillic "а" mixes two."""
    found = {unicodedata.name(ch, "?").split(" ")[0] for ch in name
             if unicodedata.category(ch)[0] == "L"}
    return found if not found <= _MIXABLE else {"CJK"}


def check_name(name: object) -> str:
    """The name to store, or InvalidInput saying what to change."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("choose a name (letters, digits, spaces, '.', '_' or '-')")
    shown = normalize_name(name)
    compatible = unicodedata.normalize("NFKC", shown)
    if len(shown) > MAX_NAME_CHARS or len(compatible) > MAX_NAME_CHARS:
        raise InvalidInput(f"a name has at most {MAX_NAME_CHARS} characters; choose a shorter "
                           "one")
    bad = sorted({ch for ch in shown + compatible if not _name_char_ok(ch)})
    if bad:
        shown_bad = " ".join(repr(ch) for ch in bad[:5])
        raise InvalidInput(f"a name may hold letters, digits, spaces, '.', '_' and '-' only, "
                           f"not {shown_bad}; choose another")
    if len(_scripts(compatible)) > 1:
        raise InvalidInput("a name's letters must come from one script (a name mixing, say, "
                           "Latin and Cyrillic letters could pass for someone else's); "
                           "choose another")
    if not any(unicodedata.category(ch)[0] == "L" or ch.isdigit() for ch in compatible):
        raise InvalidInput("a name needs at least one letter or digit")
    return shown


def check_password(password: object) -> str:
    """The password to hash (composed, NFC, so a precomposed and a decomposed "é" are the same
    password), or InvalidInput saying what to change. Checked before any hashing."""
    if not isinstance(password, str) or not password:
        raise InvalidInput(f"choose a password of at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_CHARS} characters, this one "
                           f"has {len(password)}; choose a shorter one (a passphrase of a few "
                           "words is plenty)")
    if "\x00" in password:
        raise InvalidInput("a password cannot contain the NUL character; choose another")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in password):
        raise InvalidInput("the password holds an unpaired surrogate (not text); choose another")
    password = unicodedata.normalize("NFC", password)
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_CHARS} characters; this one "
                           f"has {len(password)}")
    return password


def usable_password(password: object) -> str | None:
    """A login attempt's password as hashed, or None for one no account can have (too long,
    NUL, not text): refused without hashing, which the throttle has already counted."""
    try:
        return check_password(password)
    except InvalidInput:
        return None


class Hashing:
    """argon2id on worker threads, at most HASHES_AT_ONCE at a time. One per directory, made
    on the event loop that uses it. `hashes` counts the argon2 computations started (hash and
    verify), which tests read to prove that refused attempts cost none."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(HASHES_AT_ONCE)
        self.hashes = 0

    async def hash(self, password: str) -> str:
        async with self._slots:
            self.hashes += 1
            return await asyncio.to_thread(_hasher.hash, password)

    async def verify(self, stored: str | None, password: str | None) -> bool:
        """Whether `password` matches `stored`; with either missing, a dummy hash is verified
        so that the time is the same and the answer is False."""
        async with self._slots:
            self.hashes += 1
            return await asyncio.to_thread(_verify, stored, password)

    @staticmethod
    def needs_rehash(stored: str) -> bool:
        """Whether a stored hash was made with weaker parameters than today's."""
        try:
            return _hasher.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return False


def _verify(stored: str | None, password: str | None) -> bool:
    try:
        ok = _hasher.verify(stored or _DUMMY_HASH, password or "\x00 no password")
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None and password is not None
