"""Errors the service API raises. Each maps to one HTTP status and carries a message that says
what went wrong and what to do, so the REST API, the UI and notebooks can show it as is."""

from __future__ import annotations


class ChatError(Exception):
    """Base class; `status` is the HTTP status the REST API answers with."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message, "code": self.code}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body


class InvalidInput(ChatError):
    status = 422
    code = "invalid_input"


class MalformedRequest(ChatError):
    status = 400
    code = "malformed_request"


class PayloadTooLarge(ChatError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ChatError):
    """A body in a format other than JSON (a wrong Content-Type)."""

    status = 415
    code = "unsupported_media_type"


class NotFound(ChatError):
    status = 404
    code = "not_found"


class Conflict(ChatError):
    status = 409
    code = "conflict"


class TurnFailed(ChatError):
    """The LLM could not produce a reply; the user message is saved and the turn can be retried."""

    status = 502
    code = "llm_failed"


class TurnCancelled(ChatError):
    status = 409
    code = "turn_cancelled"


class DatabaseUnavailable(ChatError):
    status = 503
    code = "database_unavailable"


class ShuttingDown(ChatError):
    """This process is stopping; the turn is saved in PostgreSQL and finishes after the start."""

    status = 503
    code = "shutting_down"


class LLMUnavailable(ChatError):
    """The LLM server cannot be reached or answered 5xx: worth retrying."""

    status = 503
    code = "llm_unavailable"


class LLMRejected(ChatError):
    """The LLM server refused the request (4xx): retrying the same request will not help."""

    status = 502
    code = "llm_rejected"


class TooManyTurns(ChatError):
    """A person's share of the app is used up for now (share mode's per-person limits);
    `retry_after` says in how many seconds to try again (the Retry-After header)."""

    status = 429
    code = "too_many_turns"

    @property
    def retry_after(self) -> int:
        return max(1, int(self.details.get("retry_after_sec") or 1))
