"""Validation and normalisation of the identifiers gateways send us."""

import re

from profiles.errors import Invalid

PROVIDER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# 1–255 characters, no slash, no whitespace, no control characters.
SESSION_KEY_RE = re.compile(r"^[^\s/\x00-\x1f\x7f]{1,255}$")
PROFILE_NAME_RE = re.compile(r"^[^\s/\x00-\x1f\x7f]{1,190}$")

# Spellings openclaw normalises; operators add more per provider (ProviderAlias).
BUILTIN_ALIASES = {
    "z.ai": "zai",
    "z-ai": "zai",
    "aws-bedrock": "amazon-bedrock",
    "bedrock": "amazon-bedrock",
}


def normalize_provider_id(raw, field="provider"):
    if not isinstance(raw, str):
        raise Invalid(f"{field} must be a string", {field: ["must be a string"]})
    value = raw.strip().lower()
    value = BUILTIN_ALIASES.get(value, value)
    if not PROVIDER_ID_RE.match(value):
        raise Invalid(
            f"{field} must be a lowercase slug (letters, digits, '.', '_', '-')",
            {field: ["must be a lowercase slug of at most 64 characters"]},
        )
    return value


def split_profile_id(raw, field="profile"):
    """`anthropic:default` → ('anthropic', 'default'), the provider part normalised."""
    if not isinstance(raw, str) or ":" not in raw:
        raise Invalid(f"{field} must look like 'provider:name'", {field: ["must look like 'provider:name'"]})
    provider_part, name = raw.strip().split(":", 1)
    provider_id = normalize_provider_id(provider_part, field)
    if not PROFILE_NAME_RE.match(name):
        raise Invalid(
            f"{field} name must be 1–190 characters without slashes, spaces or control characters",
            {field: ["invalid name part"]},
        )
    return provider_id, name


def validate_session_key(raw, field="session_key"):
    if not isinstance(raw, str) or not SESSION_KEY_RE.match(raw):
        raise Invalid(
            f"{field} must be 1–255 characters with no '/', whitespace or control characters",
            {field: ["must be 1–255 characters with no '/', whitespace or control characters"]},
        )
    return raw


def clean_reason(reason, field="reason"):
    """An operator's or gateway's free-text reason: a string of at most 500 characters, trimmed."""
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 500 or "\x00" in reason:
        raise Invalid(f"{field} must be a string of at most 500 characters", {field: ["at most 500 characters"]})
    return reason.strip()
