"""The routes under /api/."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console import health
from console.api import ping
from console.api import profiles as profiles_api
from console.api import sessions as sessions_api
from profiles import services as profile_services

urlpatterns = [
    path("ping", ping.PingView.as_view(), name="ping"),
    path("select", sessions_api.SelectView.as_view(), name="select"),
    path("report", sessions_api.ReportView.as_view(), name="report"),
    path("sessions/reset", sessions_api.BulkResetView.as_view(), name="bulk-reset"),
    path("sessions/<str:session_key>", sessions_api.SessionDetailView.as_view(), name="session"),
    path("sessions/<str:session_key>/reset", sessions_api.SessionResetView.as_view(), name="session-reset"),
    path("sessions/<str:session_key>/override", sessions_api.SessionOverrideView.as_view(), name="session-override"),
    path("sessions/<str:session_key>/events", sessions_api.SessionEventsView.as_view(), name="session-events"),
    path("events", sessions_api.EventListView.as_view(), name="events"),
    path("profiles", profiles_api.ProfileListView.as_view(), name="profiles"),
    path("profiles/<str:profile_id>", profiles_api.ProfileDetailView.as_view(), name="profile"),
    path("profiles/<str:profile_id>/clear-cooldown",
         profiles_api.ProfileActionView.as_view(operation=profile_services.clear_cooldown), name="profile-clear-cooldown"),
    path("profiles/<str:profile_id>/disable",
         profiles_api.ProfileActionView.as_view(operation=profile_services.disable_profile), name="profile-disable"),
    path("profiles/<str:profile_id>/enable",
         profiles_api.ProfileActionView.as_view(operation=profile_services.enable_profile), name="profile-enable"),
    path("providers", profiles_api.ProviderListView.as_view(), name="providers"),
    path("providers/<str:provider_id>", profiles_api.ProviderDetailView.as_view(), name="provider"),
    path("schema", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[], authentication_classes=[]),
         name="docs"),
    re_path(r"^.*$", health.api_not_found),
]
