"""People in share mode: accounts, their passwords, sessions and API tokens, consent.

Local mode has one person and no accounts (person.LOCAL); the store and the service serve any
caller as a Person, so the same code path runs with accounts off and on.
"""
