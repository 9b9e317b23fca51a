"""The Django admin: tokens, providers and profiles, sessions and the audit log (provenance read-only)."""

from console.admin import profiles, sessions, tokens  # noqa: F401  (each registers its models)
