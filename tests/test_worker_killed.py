"""A worker killed in the middle of expire_cooldowns: after a restart every expiry is recorded exactly once.

A separate process runs the expiry (the plain function the Celery task wraps) on
the test database and is SIGKILLed by a hook at its worst moment: inside the
transaction of one profile, after the row update and the event insert, before
the commit. PostgreSQL rolls that transaction back; the profiles tidied before
it stay tidied. The next run (the worker restarted) records the rest, once.
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection

from profiles import expiry
from profiles import services as profile_services
from profiles.models import AuthProfile, Event, ModelCooldown
from sessions_app import services as session_services
from tests.conftest import T0
from tests.servers import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

KILL_AT = 5  # the 5th profile (or pair) being tidied dies with its transaction open

DYING_RUN = """
import os, signal, sys
from datetime import datetime
import django
django.setup()
from profiles import expiry

calls, original = 0, expiry.write_events

def dying(events):
    global calls
    original(events)
    calls += 1
    if calls == int(sys.argv[2]):
        print("killing myself mid-transaction", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

expiry.write_events = dying
expiry.expire_cooldowns(datetime.fromisoformat(sys.argv[1]))
"""


def database_url():
    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def expiry_events():
    return list(Event.objects.filter(kind__in=["cooldown_expired", "disable_expired"])
                .values_list("profile_id", "model", "kind"))


def test_it_records_each_expiry_once_after_a_worker_dies_mid_run():
    """Killed mid-transaction, then restarted: every window ended once, with exactly one event each."""
    windows = set()
    for n in range(10):
        profile_id = f"anthropic:key{n}"
        profile_services.create_profile(profile_id, "api_key", f"sk-key{n}-0123456789abcdef", T0, "test")
        outcome = "billing" if n < 3 else "rate_limit"
        session_services.report_outcome(profile=profile_id, outcome=outcome, now=T0, actor="test")
        windows.add((profile_id, "", "disable_expired" if n < 3 else "cooldown_expired"))
    for n in (8, 9):  # (profile, model) pairs too
        session_services.report_outcome(profile=f"anthropic:key{n}", outcome="rate_limit", model="opus", now=T0,
                                        actor="test")
        windows.add((f"anthropic:key{n}", "opus", "cooldown_expired"))
    now = T0 + timedelta(hours=6)  # past every window (billing: 5 h)

    dying = subprocess.run(
        [sys.executable, "-c", DYING_RUN, now.isoformat(), str(KILL_AT)], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "console.settings"},
    )
    assert dying.returncode == -signal.SIGKILL, dying.stdout + dying.stderr
    assert "killing myself mid-transaction" in dying.stdout
    assert len(expiry_events()) == KILL_AT - 1  # the dying transaction left nothing behind
    tidied = AuthProfile.objects.filter(cooldown_until__isnull=True, disabled_until__isnull=True).count()
    assert tidied == KILL_AT - 1

    restarted = expiry.expire_cooldowns(now)
    assert restarted.cooldowns_expired + restarted.disables_expired + restarted.model_cooldowns_expired == (
        len(windows) - (KILL_AT - 1))
    events = expiry_events()
    assert sorted(events) == sorted(windows)  # each window ended once, no duplicate, none missing
    assert not AuthProfile.objects.filter(cooldown_until__isnull=False).exists()
    assert not AuthProfile.objects.filter(disabled_until__isnull=False).exists()
    assert not ModelCooldown.objects.filter(cooldown_until__isnull=False).exists()
    assert set(AuthProfile.objects.values_list("error_count", flat=True)) == {1}  # counts kept

    again = expiry.expire_cooldowns(now)
    assert again.as_dict() == {"cooldowns_expired": 0, "disables_expired": 0, "model_cooldowns_expired": 0,
                               "counts_forgotten": 0}
    assert len(expiry_events()) == len(windows)
