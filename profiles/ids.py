"""Validation and normalisation of the identifiers gateways send us."""

import re
import unicodedata

from profiles.errors import Invalid

PROVIDER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# 1–255 characters, no slash, no whitespace, no control characters.
SESSION_KEY_RE = re.compile(r"^[^\s/\x00-\x1f\x7f]{1,255}$")
# Printable ASCII without space or '/': a name shows as what it is, so no two profiles can look alike
# (Cyrillic look-alikes, zero-width characters and right-to-left marks would make `anthropic:default`
# three times over).
PROFILE_NAME_RE = re.compile(r"^[!-.0-~]{1,190}$")
# Characters never allowed in a session key: control, format (zero-width, bidi marks), surrogate,
# private-use, unassigned, and separators.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
# Scripts that share one writing system, so mixing them inside a segment is ordinary (Japanese, Korean).
_SCRIPT_GROUPS = {"HIRAGANA": "HAN", "KATAKANA": "HAN", "CJK": "HAN", "HANGUL": "HAN", "BOPOMOFO": "HAN"}

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
            f"{field} name must be 1–190 printable ASCII characters without slashes or spaces",
            {field: ["invalid name part: printable ASCII without '/' or spaces"]},
        )
    return provider_id, name


def _script(char):
    word = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_GROUPS.get(word, word)


def _confusable(key):
    """Why a session key could pass for another, or None: not in NFKC form (full-width letters, ligatures),
    an invisible character, or letters of two scripts in one `:`-separated segment (a Cyrillic `е` among
    Latin letters). A segment wholly in one script (`dm:Иван`) is fine."""
    if unicodedata.normalize("NFKC", key) != key:
        return "must be in Unicode NFKC form (no full-width or compatibility characters)"
    if any(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in key):
        return "must not contain invisible or direction-changing characters"
    for segment in key.split(":"):
        scripts = {_script(char) for char in segment if unicodedata.category(char).startswith("L")}
        if len(scripts) > 1:
            return "must not mix scripts within one ':'-separated part (look-alike letters)"
    return None


def validate_session_key(raw, field="session_key"):
    if not isinstance(raw, str) or not SESSION_KEY_RE.match(raw):
        raise Invalid(
            f"{field} must be 1–255 characters with no '/', whitespace or control characters",
            {field: ["must be 1–255 characters with no '/', whitespace or control characters"]},
        )
    if not raw.isascii() and (problem := _confusable(raw)):
        raise Invalid(f"{field} {problem}", {field: [problem]})
    return raw


def clean_reason(reason, field="reason"):
    """An operator's or gateway's free-text reason: a string of at most 500 characters, trimmed."""
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 500 or "\x00" in reason:
        raise Invalid(f"{field} must be a string of at most 500 characters", {field: ["at most 500 characters"]})
    return reason.strip()
