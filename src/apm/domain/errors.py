"""Domain errors; the API maps each to one HTTP answer in one place."""

from __future__ import annotations


class DomainError(Exception):
    """`detail` is the human sentence of the answer; `extra` adds keys to its body."""

    detail: str = "Request failed."

    def __init__(self, detail: str | None = None, *, extra: dict | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail:
            self.detail = detail
        self.extra = extra or {}


class ValidationFailed(DomainError):
    """Input broke a rule; `errors` maps each field or parameter to its messages."""

    detail = "Invalid input."

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None) -> None:
        super().__init__(detail)
        self.errors = errors


class NotFound(DomainError):
    detail = "Not found."


class InvalidPage(DomainError):
    detail = "Invalid page."


class PayloadTooLarge(DomainError):
    detail = "Request body is too large."


class StorageUnavailable(DomainError):
    """The database cannot be reached or did not answer in time; `reason` is for logs/health."""

    detail = "Database unavailable."

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason or self.detail


class BackendUnsupported(DomainError):
    """The configured storage backend cannot run on this database."""
