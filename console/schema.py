"""OpenAPI post-processing: every API operation documents the error answers it can give."""

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


def add_error_responses(result, generator, request, public):
    """Add the documented error body (DESIGN §3) to each operation; `Error` is one shared component."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/") or path in ("/api/schema", "/api/docs"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ERRORS.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": reference}}}
                )
    return result
