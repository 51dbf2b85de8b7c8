"""Errors and validation results shared by every domain."""

from __future__ import annotations

from dataclasses import dataclass


class AuthError(Exception):
    """The caller is not authenticated (401) or lacks a scope (403)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unauthenticated(message: str = "A valid API key is required.") -> AuthError:
    """The caller sent no key, or one that is unknown or revoked."""
    return AuthError("UNAUTHENTICATED", message)


def forbidden(scope: str) -> AuthError:
    """The caller's key lacks the scope this operation needs."""
    return AuthError("FORBIDDEN", f"This API key lacks the '{scope}' scope.")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field, named by its dotted path."""

    field: str
    message: str

    def render(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidInput(Exception):
    """Input failed validation; carries one error per bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "Invalid event: " + "; ".join(error.render() for error in self.errors) + "."
