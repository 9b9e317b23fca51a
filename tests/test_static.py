"""Static files (the console's scripts, the admin's styles, Swagger UI) in every mode, served by whitenoise."""

import http.client
import re
import shutil
import tempfile

import pytest

from tests.servers import Server, manage
from tests.test_instances import database_url


def get(address, path, **headers):
    conn = http.client.HTTPConnection(address, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_serves_hashed_compressed_cached_static_files_under_gunicorn():
    """`make serve`: after collectstatic, /api/docs and /admin/ name hashed files served gzipped with a year's cache."""
    root = tempfile.mkdtemp(prefix="authbroker-static-")
    server = None
    try:
        manage(database_url(), "collectstatic", "--noinput", "--verbosity", "0", env={"STATIC_ROOT": root})
        server = Server(database_url(), workers=1, STATIC_ROOT=root).wait_ready()
        status, _, page = get(server.url, "/api/docs")
        assert status == 200
        bundle = re.search(rb'src="(/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js)"',
                           page)
        assert bundle, page[:2000]
        status, headers, body = get(server.url, bundle.group(1).decode(), **{"Accept-Encoding": "gzip"})
        assert status == 200 and headers.get("Content-Encoding") == "gzip"
        assert "immutable" in headers["Cache-Control"] and "max-age=315360000" in headers["Cache-Control"]
        assert len(body) > 100_000
        status, _, login = get(server.url, "/admin/login/")
        css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login)
        assert status == 200 and css, login[:2000]
        status, headers, _ = get(server.url, css.group(1).decode())
        assert status == 200 and headers["Content-Type"].startswith("text/css")
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_it_serves_static_files_before_collectstatic(client):
    """A fresh clone (tests, a bare runserver): the apps' own files, no build step."""
    for path in ("/static/console/htmx.min.js", "/static/admin/css/base.css",
                 "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content)


def test_it_answers_a_missing_static_file_with_404(client, db):
    assert client.get("/static/console/nope.js").status_code == 404
