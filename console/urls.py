"""Project routes: the API, probes and metrics, the admin and the operator console."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from console import health, observability

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:providers", permanent=False), name="home"),
    path("api/", include(("console.api.urls", "api"))),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", observability.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("console/", include("console.ui.urls")),
]
