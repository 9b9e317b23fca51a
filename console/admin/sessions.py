"""Admin for sessions and the audit log: provenance is read-only, events cannot be added, changed or deleted."""

from django.contrib import admin, messages
from django.utils import timezone

from console.ui.decorators import operator
from profiles.errors import ServiceError
from profiles.models import Event
from sessions_app import services
from sessions_app.models import Lease, Pin, Session

PIN_PROVENANCE = ("provider", "profile", "source", "set_at", "set_by", "reason", "compaction_count")


class PinInline(admin.TabularInline):
    """A session's pins, one per provider, with their provenance: read-only (changed through actions)."""

    model = Pin
    fields = readonly_fields = PIN_PROVENANCE
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("session_key", "provider", "last_profile", "pins_shown", "last_activity_at")
    list_filter = ("pins__source", "provider")
    list_select_related = ("provider", "last_profile")
    search_fields = ("session_key",)
    date_hierarchy = "last_activity_at"
    readonly_fields = ("session_key", "session_id", "provider", "last_profile", "pin_version", "boundary_pending",
                       "epoch", "last_activity_at", "created_at", "updated_at")
    inlines = [PinInline]
    actions = ["clear_overrides"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("pins")

    @admin.display(description="pins")
    def pins_shown(self, obj):
        return ", ".join(f"{pin.profile_id} ({pin.source})" for pin in obj.pins.all()) or "—"

    def has_add_permission(self, request):
        return False  # sessions come from the gateway

    def has_delete_permission(self, request, obj=None):
        return False  # their history lives on in the events; a pin is cleared, not deleted

    @admin.action(description="Clear every pin of the selected sessions")
    def clear_overrides(self, request, queryset):
        now, actor, count = timezone.now(), operator(request), 0
        for key in queryset.filter(pins__isnull=False).distinct().values_list("session_key", flat=True):
            try:
                services.clear_override(session_key=key, now=now, actor=actor, reason="cleared in the admin")
                count += 1
            except ServiceError as error:
                self.message_user(request, f"{key}: {error.message}", messages.ERROR)
        self.message_user(request, f"Override cleared: {count} session{'s' if count != 1 else ''}.",
                          messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody edits by hand: events, lease reports, model cooldowns."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "actor", "source", "session_key", "profile_id", "model", "reason")
    list_filter = ("kind", "source", "provider_id")
    search_fields = ("session_key", "profile_id", "actor", "reason")
    date_hierarchy = "at"
    ordering = ("-at", "-id")


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("lease_id", "session_key", "profile_id", "outcome", "issued_at", "reported_at")
    list_filter = ("outcome",)
    search_fields = ("lease_id", "session_key", "profile_id")
    date_hierarchy = "reported_at"
