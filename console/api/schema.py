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
    "406": "not acceptable (the API answers JSON)",
    "409": "conflict",
    "413": "body over 64 KiB",
    "415": "body is not JSON",
    "429": "over the token's rate; see Retry-After",
    "503": "database unavailable; see Retry-After",
}
# The operations that can answer 409, and why.
CONFLICTS = {
    ("post", "/api/select"): "the provider has no profile an operator has left on",
    ("post", "/api/report"): "the lease expired, or names another session or profile",
    ("post", "/api/sessions/{session_key}/reset"): "the provider has no profile an operator has left on",
    ("post", "/api/profiles"): "a profile with that id exists",
    ("patch", "/api/providers/{provider_id}"): "an alias already names another provider",
}
NAMING_FIELDS = {"profile", "provider", "profile_id", "provider_id"}


def _describe_identifiers(properties):
    for name, schema in properties.items():
        if name in IDENTIFIERS and schema.get("type") == "string":
            schema.update(IDENTIFIERS[name])


def _rename_components(result):
    """`SelectRequest` rather than `SelectRequestRequest`: the request serializers already end in Request."""
    schemas = result.get("components", {}).get("schemas", {})
    renames = {name: name.removesuffix("Request") for name in list(schemas)
               if name.endswith("RequestRequest") and name.removesuffix("Request") not in schemas}
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    refs = {f"#/components/schemas/{old}": f"#/components/schemas/{new}" for old, new in renames.items()}

    def walk(node):
        if isinstance(node, dict):
            if node.get("$ref") in refs:
                node["$ref"] = refs[node["$ref"]]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)


def _body_properties(operation, schemas):
    content = operation.get("requestBody", {}).get("content", {})
    for media in content.values():
        ref = media.get("schema", {}).get("$ref", "")
        return schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
    return {}


def _errors_of(method, path, operation, schemas):
    """The error answers this operation can give: only a body can fail to be JSON, only a request naming
    something can miss it, only some operations conflict."""
    has_body = "requestBody" in operation
    parameters = operation.get("parameters", [])
    names_something = any(p.get("in") == "path" for p in parameters) or bool(
        NAMING_FIELDS & set(_body_properties(operation, schemas)))
    codes = {"401", "403", "406", "413", "429", "503"}  # 413: the guard refuses any body over 64 KiB, GETs too
    if has_body or parameters:
        codes.add("400")
    if names_something:
        codes.add("404")
    if has_body:
        codes.add("415")
    if (method, path) in CONFLICTS:
        codes.add("409")
    return {code: CONFLICTS[(method, path)] if code == "409" else ERRORS[code] for code in sorted(codes)}


def add_error_responses(result, generator, request, public):
    """Add the documented error body (DESIGN §3) to each operation, with the codes it can answer; `Error` is
    one shared component.

    Identifiers (profile ids, provider ids, session keys) get their pattern and an
    example, in request bodies and path parameters, so clients and fuzzers know them.
    """
    _rename_components(result)
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for name, component in schemas.items():
        if name.endswith("Request"):
            _describe_identifiers(component.get("properties", {}))
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/") or path in ("/api/schema", "/api/docs"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in IDENTIFIERS:
                    parameter.setdefault("schema", {}).update(IDENTIFIERS[parameter["name"]])
            for status, description in _errors_of(method, path, operation, schemas).items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": reference}}}
                )
    return result
