"""The accounts the settings name: SHARE_AUTH's users, SHARE_ADMINS, SHARE_INVITE.

Checked before the app starts anything (app.py), so a mistake is one clear line and no
half-started database: a malformed pair, a short password, a name twice, an admin who is no
SHARE_AUTH user, or sign-up with nobody to administer it.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_core.accounts.passwords import MIN_PASSWORD_CHARS, check_name, check_password, name_key
from chat_core.config import ConfigError, Settings
from chat_core.errors import InvalidInput

MIN_INVITE_CHARS = 8


@dataclass(frozen=True)
class ConfigAccount:
    name: str
    key: str
    password: str
    is_admin: bool


def parse_credentials(text: str) -> list[tuple[str, str]]:
    """"user:password" pairs separated by commas (SHARE_AUTH). Passwords of fewer than 8
    characters are refused: a share link is on the public internet."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError("SHARE_AUTH must look like user:password (several separated by "
                              "commas)")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ConfigError(f"the SHARE_AUTH password of {user!r} is shorter than "
                              f"{MIN_PASSWORD_CHARS} characters; a share link is public, choose "
                              "a longer one")
        pairs.append((user.strip(), password))
    return pairs


def config_accounts(settings: Settings) -> list[ConfigAccount]:
    """SHARE_AUTH's accounts, in order, each marked admin or not; ConfigError for any mistake."""
    if settings.share_invite and not settings.share_auth:
        raise ConfigError("SHARE_INVITE lets people sign up, but nobody could administer them: "
                          "set SHARE_AUTH=host:password so someone can administer")
    if settings.share_invite and len(settings.share_invite) < MIN_INVITE_CHARS:
        raise ConfigError(f"SHARE_INVITE is shorter than {MIN_INVITE_CHARS} characters; anyone "
                          "could guess it, choose a longer code")
    accounts: dict[str, tuple[str, str]] = {}
    for user, password in parse_credentials(settings.share_auth):
        try:
            name, secret = check_name(user), check_password(password)
        except InvalidInput as exc:
            raise ConfigError(f"SHARE_AUTH, account {user!r}: {exc.message}") from None
        if name_key(name) in accounts:
            raise ConfigError(f"SHARE_AUTH names {user!r} twice (names are the same whatever "
                              "their case); give each account its own name")
        accounts[name_key(name)] = (name, secret)
    admins = _admin_keys(settings, accounts)
    return [ConfigAccount(name, key, secret, key in admins)
            for key, (name, secret) in accounts.items()]


def _admin_keys(settings: Settings, accounts: dict[str, tuple[str, str]]) -> list[str]:
    names = [n.strip() for n in settings.share_admins.split(",") if n.strip()]
    if not names:
        return list(accounts)[:1]
    keys = []
    for name in names:
        key = name_key(name)
        if key not in accounts:
            raise ConfigError(f"SHARE_ADMINS names {name!r}, who is not a SHARE_AUTH user; "
                              "admins log in with a SHARE_AUTH password: add them there or "
                              "fix the name")
        keys.append(key)
    return keys


def first_admin_key(settings: Settings) -> str | None:
    """The name key of the admin who gets the conversations without an owner: the first of
    SHARE_ADMINS, else the first SHARE_AUTH user."""
    accounts = config_accounts(settings)  # checks SHARE_ADMINS too
    names = [n.strip() for n in settings.share_admins.split(",") if n.strip()]
    if names:
        return name_key(names[0])
    return accounts[0].key if accounts else None
