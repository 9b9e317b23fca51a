"""The HTTP API under /api/: bearer tokens and scopes, strict fields, the error format, the schema, and the views."""
