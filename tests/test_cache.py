"""The shared cache: with CACHE_URL on Redis, every instance counts a token's requests in one place."""

import subprocess
import uuid

import pytest

from console.models import ApiToken
from tests.servers import Server, request
from tests.test_instances import database_url

REDIS = "redis://127.0.0.1:6379/0"


def redis_up():
    try:
        return subprocess.run(["redis-cli", "-u", REDIS, "ping"], capture_output=True, text=True,
                              timeout=5).stdout.strip() == "PONG"
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not redis_up(), reason="needs Redis at 127.0.0.1:6379 (.ci/run starts it)")]


def test_it_throttles_a_token_across_instances_with_a_shared_cache():
    """Two servers on one Redis, 10/day: twenty requests alternating between them get ten answers, not twenty."""
    token = ApiToken.issue("fleet", ["gateway", "admin"])[1]
    shared = {"CACHE_URL": REDIS, "CACHE_KEY_PREFIX": f"test-{uuid.uuid4().hex}", "AUTHBROKER_THROTTLE_RATE": "10/day"}
    servers = []
    try:
        for _ in range(2):
            servers.append(Server(database_url(), workers=1, **shared))
        for server in servers:
            server.wait_ready()
        statuses = [request(servers[n % 2].url, "GET", "/api/profiles", token=token)[0] for n in range(20)]
    finally:
        for server in servers:
            server.stop()

    assert statuses.count(200) == 10 and statuses.count(429) == 10, statuses
