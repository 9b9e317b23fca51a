"""Write authbroker's state back in openclaw's shapes (DESIGN §6).

The current JSON form is the split one (openclaw 2026.4.29 and later; 2026.9 takes it in through
`openclaw doctor --fix`): `auth-profiles.json` holds `version` and `profiles` (secrets, or the
references openclaw resolves), `auth-state.json` holds `order`, `lastGood` and `usageStats`. With
`single_file` both go into `auth-profiles.json`, as 2026.4.5 and earlier read it.

Sessions are written fresh (`sessions.json` with only the fields authbroker holds), or merged into an
existing `sessions.json`, keeping every other per-session field openclaw keeps there.
"""

import json
import os
import tempfile
from pathlib import Path

from django.db import transaction

from profiles.models import AuthProfile, ModelCooldown, Provider
from sessions_app.models import Pin, Session
from sessions_app.openclaw import stores
from sessions_app.openclaw.stores import StoreError, to_ms

# Disable windows authbroker's own rules open (the disabled lane). Any other disable reason came from an
# openclaw subscription block (`blockedUntil` / `blockedReason`) and is written back as one.
DISABLE_REASONS = ("", "billing", "auth", "auth_permanent")
PIN_FIELDS = ("authProfileOverride", "authProfileOverrideSource", "authProfileOverrideCompactionCount")


# ---------------------------------------------------------------- auth store


def profile_entry(profile):
    """One credential as openclaw writes it: the secret, or the reference the gateway resolves."""
    secret_field, ref_field = stores.SECRET_FIELDS[profile.kind]
    entry = {"type": profile.kind, "provider": profile.provider_id}
    ref = profile.metadata.get("secret_ref")
    secret = profile.reveal_secret()
    if secret or not ref:
        entry[secret_field] = secret
    else:
        entry[ref_field] = {"source": ref["source"], "provider": ref["provider"], "id": ref["id"]}
    refresh = profile.reveal_refresh()
    if refresh and profile.kind == "oauth":
        entry["refresh"] = refresh
    if profile.expires_at is not None:
        entry["expires"] = to_ms(profile.expires_at)
    if profile.metadata.get("email"):
        entry["email"] = profile.metadata["email"]
    if profile.metadata.get("display_name"):
        entry["displayName"] = profile.metadata["display_name"]
    return entry


def usage_stats(profile, pair):
    """A profile's `usageStats` entry (epoch ms); `pair` is its latest-ending model cooldown, if any."""
    stats = {}
    if profile.last_used:
        stats["lastUsed"] = to_ms(profile.last_used)
    if profile.cooldown_until:
        stats["cooldownUntil"] = to_ms(profile.cooldown_until)
        if profile.cooldown_reason:
            stats["cooldownReason"] = profile.cooldown_reason
    elif pair is not None:
        stats["cooldownUntil"] = to_ms(pair.cooldown_until)
        if pair.cooldown_reason:
            stats["cooldownReason"] = pair.cooldown_reason
        stats["cooldownModel"] = pair.model
    elif profile.cooldown_reason:
        stats["cooldownReason"] = profile.cooldown_reason
    blocked = profile.disabled_reason not in DISABLE_REASONS
    until_key, reason_key = ("blockedUntil", "blockedReason") if blocked else ("disabledUntil", "disabledReason")
    if profile.disabled_until:
        stats[until_key] = to_ms(profile.disabled_until)
    if profile.disabled_reason:
        stats[reason_key] = profile.disabled_reason
    if profile.last_failure_at:
        stats["lastFailureAt"] = to_ms(profile.last_failure_at)
    if profile.failure_counts:
        stats["failureCounts"] = dict(profile.failure_counts)
    if stats or profile.error_count:
        return {"errorCount": profile.error_count, **stats}
    return {}


def export_auth_store():
    """(`auth-profiles.json`, `auth-state.json`) documents. The first holds decrypted secrets."""
    profiles = list(AuthProfile.objects.order_by("provider_id", "position", "id"))
    pairs = {}
    for pair in ModelCooldown.objects.filter(cooldown_until__isnull=False).order_by("cooldown_until", "model"):
        pairs[pair.profile_id] = pair  # openclaw keeps one model cooldown per profile: the latest one
    out, order, usage = {}, {}, {}
    for profile in profiles:
        out[profile.id] = profile_entry(profile)
        order.setdefault(profile.provider_id, []).append(profile.id)
        stats = usage_stats(profile, pairs.get(profile.id))
        if stats:
            usage[profile.id] = stats
    last_good = dict(Provider.objects.filter(last_good__isnull=False).order_by("id").values_list("id", "last_good"))
    return ({"version": 1, "profiles": out},
            {"version": 1, "order": order, "lastGood": last_good, "usageStats": usage})


# ---------------------------------------------------------------- sessions


def session_entries():
    """Per session key: `sessionId`, `updatedAt` and the pin openclaw can hold.

    openclaw holds one pin per session: the pin of the session's current provider is exported, or, when
    it has none there, its most recently set pin.
    """
    out = {}
    pins = {}
    for pin in Pin.objects.order_by("session_id", "set_at", "provider_id"):
        pins.setdefault(pin.session_id, []).append(pin)
    for session in Session.objects.order_by("session_key"):
        entry = {"sessionId": str(session.session_id)}
        if session.last_activity_at is not None:
            entry["updatedAt"] = to_ms(session.last_activity_at)
        own = pins.get(session.pk, [])
        pin = next((p for p in own if p.provider_id == session.provider_id), own[-1] if own else None)
        if pin is not None:
            entry["authProfileOverride"] = pin.profile_id
            entry["authProfileOverrideSource"] = pin.source
            if pin.compaction_count is not None:
                entry["authProfileOverrideCompactionCount"] = pin.compaction_count
        out[session.session_key] = entry
    return out


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {json.dumps(key, ensure_ascii=False)} appears twice in one object")
        out[key] = value
    return out


def read_sessions_for_merge(path):
    """An existing `sessions.json` as plain JSON (every field kept); StoreError when it is not one."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise StoreError(path, None, f"cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise StoreError(path, None, "is not UTF-8 text") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise StoreError(path, None, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise StoreError(path, None, f"is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(path, "the file", "must be an object keyed by session key")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise StoreError(path, f"[{json.dumps(key, ensure_ascii=False)}]", "must be an object")
    return data


def merge_sessions(existing, ours):
    """`existing` (openclaw's sessions.json) with authbroker's session ids, activity and pins merged in.

    Every other field of an entry stays as openclaw wrote it. A session authbroker holds replaces the
    entry's `sessionId` and pin (a pin authbroker does not hold is removed from the entry); `updatedAt`
    becomes the later of the two. Entries authbroker does not hold stay as they are; sessions only
    authbroker holds are added. Returns (merged, updated, added).
    """
    merged, updated, added = dict(existing), 0, 0
    for key, entry in ours.items():
        old = merged.get(key)
        if old is None:
            merged[key] = entry
            added += 1
            continue
        new = {k: v for k, v in old.items() if k not in PIN_FIELDS}
        new["sessionId"] = entry["sessionId"]
        if "updatedAt" in entry:
            theirs = old.get("updatedAt")
            later = isinstance(theirs, int | float) and not isinstance(theirs, bool) and theirs > entry["updatedAt"]
            new["updatedAt"] = theirs if later else entry["updatedAt"]
        new.update({k: entry[k] for k in PIN_FIELDS if k in entry})
        if new != old:
            updated += 1
        merged[key] = new
    return merged, updated, added


# ---------------------------------------------------------------- files


def write_private_json(path, data):
    """Write `data` to `path` readable by its owner only (0600), replacing the file atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_files(auth_profiles_path, *, auth_state_path=None, single_file=False, sessions_path=None,
                 merge_sessions_path=None):
    """Write the files (every read in one transaction, so they agree). Returns a summary dict.

    Without `auth_state_path` the state file is `auth-state.json` beside `auth_profiles_path`.
    """
    merge_into = read_sessions_for_merge(merge_sessions_path) if merge_sessions_path else None
    with transaction.atomic():
        profiles_doc, state_doc = export_auth_store()
        sessions = session_entries() if (sessions_path or merge_sessions_path) else None
    summary = {"profiles": len(profiles_doc["profiles"])}
    if single_file:
        write_private_json(auth_profiles_path, {**profiles_doc, **{k: v for k, v in state_doc.items()
                                                                    if k != "version"}})
    else:
        state_path = Path(auth_state_path) if auth_state_path else Path(auth_profiles_path).parent / "auth-state.json"
        write_private_json(auth_profiles_path, profiles_doc)
        write_private_json(state_path, state_doc)
        summary["auth_state"] = str(state_path)
    if sessions_path:
        write_private_json(sessions_path, sessions)
        summary["sessions"] = len(sessions)
    if merge_into is not None:
        merged, updated, added = merge_sessions(merge_into, sessions)
        write_private_json(merge_sessions_path, merged)
        summary["merged"] = (updated, added, len(merged))
    return summary
