"""Bench data, generated inside PostgreSQL (INSERT … SELECT generate_series): a million rows in seconds.

The cast, with N sessions and P profiles over 10 providers (`prov0` … `prov9`):

* provider k has P/10 profiles `provk:key0000`, `provk:key0001`, … in that
  position order, strategy `ordered`, `last_good` = its first profile;
* session i (key `agent:main:bench:dm:<i>`) talks to provider i % 10; its
  kind is (i // 10) % 20: 0–17 (90 %) sit on the provider's first profile
  with no override, as `ordered` puts new sessions; 18 (5 %) are pinned
  `auto` to a fallback, 19 (5 %) pinned `user` to some profile;
* one gateway token, whose raw value the bench keeps to drive the server.

`bench/wrk.lua` computes the same mapping from i, so it never has to load keys.
"""

import hashlib
import secrets

PROVIDERS = 10
SESSION_PREFIX = "agent:main:bench:dm:"
TABLES = [
    "sessions_app_event",
    "sessions_app_lease",
    "sessions_app_session",
    "profiles_modelcooldown",
    "profiles_provideralias",
    "profiles_authprofile",
    "profiles_provider",
    "console_apitoken",
]


def session_key(i):
    return f"{SESSION_PREFIX}{i}"


def session_kind(i):
    return (i // 10) % 20


def is_plain(i):
    """A session on its provider's first profile with no override."""
    return session_kind(i) < 18


def provider_of(i):
    return f"prov{i % PROVIDERS}"


def first_profile(provider_index):
    return f"prov{provider_index}:key0000"


def generate(conn, sessions, profiles, secret_encrypted, secret_mask):
    """Replace every row the bench reads with a fresh cast; returns the gateway token (raw)."""
    per_provider = max(profiles // PROVIDERS, 1)
    if per_provider < 2:
        raise SystemExit("BENCH_PROFILES must give each of the 10 providers at least 2 profiles")
    raw_token = "ab_bench_" + secrets.token_urlsafe(24)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")
        cur.execute(
            """
            INSERT INTO profiles_provider (id, strategy, cooldown_ladder_seconds, track_failures, last_good_id,
                                           created_at, updated_at)
            SELECT 'prov' || k, 'ordered', '[60, 300, 1500, 3600]'::jsonb, true, NULL, now(), now()
            FROM generate_series(0, %s - 1) AS k
            """,
            [PROVIDERS],
        )
        cur.execute(
            """
            INSERT INTO profiles_authprofile (id, provider_id, name, kind, secret_encrypted, refresh_encrypted,
                secret_mask, metadata, position, enabled, error_count, failure_counts, cooldown_until,
                cooldown_reason, disabled_until, disabled_reason, last_used, last_success_at, last_failure_at,
                created_at, updated_at)
            SELECT 'prov' || k || ':key' || lpad(n::text, 4, '0'), 'prov' || k, 'key' || lpad(n::text, 4, '0'),
                   'api_key', %s, '', %s, '{}'::jsonb, n, true, 0, '{}'::jsonb, NULL, '', NULL, '', NULL, NULL,
                   NULL, now(), now()
            FROM generate_series(0, %s - 1) AS k, generate_series(0, %s - 1) AS n
            """,
            [secret_encrypted, secret_mask, PROVIDERS, per_provider],
        )
        cur.execute("UPDATE profiles_provider SET last_good_id = id || ':key0000'")
        # Secondary indexes are dropped during the bulk insert and built again after it (much faster
        # than maintaining them row by row); the primary key and the unique key stay.
        cur.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes AS i
            WHERE i.tablename = 'sessions_app_session'
              AND i.indexname NOT IN (SELECT conname FROM pg_constraint)
            """
        )
        secondary = cur.fetchall()
        for name, _ in secondary:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Foreign keys hold by construction; their per-row triggers would double the insert's time.
        cur.execute("SET LOCAL session_replication_role = replica")
        # Session i: provider i % 10, kind (i / 10) % 20; auto pins go to a fallback, user pins anywhere.
        cur.execute(
            """
            INSERT INTO sessions_app_session (session_key, session_id, provider_id, last_profile_id, pin_version,
                boundary_pending, epoch, last_activity_at, created_at, updated_at)
            SELECT %s || i, gen_random_uuid(), 'prov' || (i %% 10),
                   'prov' || (i %% 10) || ':key' || lpad(pos::text, 4, '0'),
                   0, false, 0, now() - random() * interval '60 seconds', now() - interval '1 day', now()
            FROM (
                SELECT i, (i / 10) %% 20 AS kind,
                       CASE (i / 10) %% 20 WHEN 18 THEN 1 + (i / 200) %% (%s - 1)
                                           WHEN 19 THEN (i / 200) %% %s
                                           ELSE 0 END AS pos
                FROM generate_series(0, %s - 1) AS i
            ) AS s
            """,
            [SESSION_PREFIX, per_provider, per_provider, sessions],
        )
        # Their pins (one per session here, on its provider): auto on a fallback, user anywhere.
        cur.execute(
            """
            INSERT INTO sessions_app_pin (session_id, provider_id, profile_id, source, set_at, set_by, reason,
                compaction_count)
            SELECT s.id, s.provider_id, s.last_profile_id,
                   CASE kind WHEN 18 THEN 'auto' ELSE 'user' END, now() - interval '1 hour',
                   CASE kind WHEN 18 THEN 'system' ELSE 'token:bench' END,
                   CASE kind WHEN 18 THEN 'failover: bench data' ELSE 'pinned by a person' END, NULL
            FROM (SELECT id, provider_id, last_profile_id,
                         (substring(session_key from length(%s) + 1)::bigint / 10) %% 20 AS kind
                  FROM sessions_app_session) AS s
            WHERE kind >= 18
            """,
            [SESSION_PREFIX],
        )
        cur.execute("SET LOCAL session_replication_role = origin")
        for _, definition in secondary:
            cur.execute(definition)
        cur.execute(
            """
            INSERT INTO console_apitoken (name, token_hash, prefix, scopes, created_at, revoked_at)
            VALUES ('bench', %s, %s, '["gateway"]'::jsonb, now(), NULL)
            """,
            [hashlib.sha256(raw_token.encode()).hexdigest(), raw_token[:8]],
        )
    conn.commit()
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.autocommit = old
    return raw_token


# ---------------------------------------------------------------- the benches' own databases


class BenchDatabase:
    """A bench's own database on the server `pg` (postgres://user@host:port): created afresh and migrated,
    connected to with autocommit, dropped at the end."""

    def __init__(self, pg, name, root):
        self.pg, self.name, self.root = pg, name, root

    def _admin(self):
        import psycopg

        return psycopg.connect(f"{self.pg}/postgres", autocommit=True)

    def connect(self):
        import psycopg

        return psycopg.connect(f"{self.pg}/{self.name}", autocommit=True)

    def create(self):
        """Drop it if it exists, create it and migrate it (DATABASE_URL must point at it)."""
        import subprocess
        import sys

        self.drop()
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=self.root, check=True)

    def drop(self):
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
