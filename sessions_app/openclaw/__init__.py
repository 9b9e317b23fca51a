"""Interop with openclaw (DESIGN §6).

- `stores`: reads every form of openclaw's state (single JSON, split JSON, 2026.9 SQLite) into plain
  data, checking every value; no database.
- `importer`: applies what `stores` read to the database, in one transaction, idempotently.
- `exporter`: writes the current split JSON form back, and merges pins into a `sessions.json`.
"""

from sessions_app.openclaw.exporter import export_files, merge_sessions
from sessions_app.openclaw.importer import (
    ACTOR,
    REASON,
    ImportReport,
    import_files,
    import_state_dir,
    import_store,
)
from sessions_app.openclaw.stores import StoreError, from_ms, to_ms

__all__ = [
    "ACTOR", "REASON", "ImportReport", "StoreError", "export_files", "from_ms", "import_files", "import_state_dir",
    "import_store", "merge_sessions", "to_ms",
]
