"""The operator console under /console/ (staff only)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from console.ui import actions, views

app_name = "console"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="console:login"), name="logout"),
    path("", views.providers, name="providers"),
    path("providers/<str:provider_id>/", actions.ProviderPage.as_view(), name="provider"),
    path("providers/<str:provider_id>/strategy/", actions.ChangeStrategy.as_view(), name="provider-strategy"),
    path("providers/<str:provider_id>/order/", actions.Reorder.as_view(), name="provider-order"),
    path("providers/<str:provider_id>/settings/", actions.ChangeSettings.as_view(), name="provider-settings"),
    path("profiles/<str:profile_id>/", views.profile_detail, name="profile"),
    path("profiles/<str:profile_id>/clear-cooldown/", actions.ClearCooldown.as_view(), name="clear-cooldown"),
    path("profiles/<str:profile_id>/disable/", actions.DisableProfile.as_view(), name="disable"),
    path("profiles/<str:profile_id>/enable/", actions.EnableProfile.as_view(), name="enable"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<str:session_key>/", views.session_detail, name="session"),
    path("sessions/<str:session_key>/override/", actions.SetOverride.as_view(), name="set-override"),
    path("sessions/<str:session_key>/clear-override/", actions.ClearOverride.as_view(), name="clear-override"),
    path("events/", views.events, name="events"),
    path("charts/", views.over_time, name="charts"),
    path("events.csv", views.events_csv, name="events-csv"),
]
