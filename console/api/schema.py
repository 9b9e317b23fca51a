"""OpenAPI post-processing: the error answers of every operation, and the shape of identifiers."""

from profiles import ids


def _pattern(regex):
    return regex.pattern.replace("\\x00", "\\u0000").replace("\\x1f", "\\u001f").replace("\\x7f", "\\u007f")


PROVIDER = {"pattern": _pattern(ids.PROVIDER_ID_RE), "example": "anthropic"}
SESSION_KEY = {"pattern": _pattern(ids.SESSION_KEY_RE), "example": "agent:main:telegram:dm:42"}
PROFILE = {
    "pattern": _pattern(ids.PROVIDER_ID_RE).rstrip("$") + ":" + _pattern(ids.PROFILE_NAME_RE).lstrip("^"),
    "example": "anthropic:default",
}
# Which request fields and path parameters name what (canonical spellings; aliases are accepted too).
IDENTIFIERS = {"profile": PROFILE, "profile_id": PROFILE, "id": PROFILE, "provider": PROVIDER,
               "provider_id": PROVIDER, "session_key": SESSION_KEY}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

ERRORS = {
    "400": "invalid input (nothing changed)",
    "401": "missing or bad token",
    "403": "the token lacks the scope",
    "404": "unknown session, profile or provider",
    "405": "method not allowed",
    "406": "not acceptable (the API answers JSON)",
    "409": "conflict",
    "413": "body over 64 KiB",
    "415": "body is not JSON",
    "429": "over the token's rate; see Retry-After",
    "503": "database unavailable; see Retry-After",
}


def _describe_identifiers(properties):
    for name, schema in properties.items():
        if name in IDENTIFIERS and schema.get("type") == "string":
            schema.update(IDENTIFIERS[name])


def add_error_responses(result, generator, request, public):
    """Add the documented error body (DESIGN §3) to each operation; `Error` is one shared component.

    Identifiers (profile ids, provider ids, session keys) get their pattern and an
    example, in request bodies and path parameters, so clients and fuzzers know them.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for name, component in schemas.items():
        if name.endswith("Request"):
            _describe_identifiers(component.get("properties", {}))
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/") or path in ("/api/schema", "/api/docs"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in IDENTIFIERS:
                    parameter.setdefault("schema", {}).update(IDENTIFIERS[parameter["name"]])
            for status, description in ERRORS.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": reference}}}
                )
    return result
