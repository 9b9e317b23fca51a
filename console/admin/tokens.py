"""Admin for API tokens: only the hash is stored, so tokens are issued by `create_api_token`, and revoked here."""

from django.contrib import admin
from django.utils import timezone

from console.models import ApiToken

admin.site.site_header = "authbroker admin"
admin.site.site_title = "authbroker admin"
admin.site.site_url = "/console/"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("name", "prefix", "scopes", "created_at", "revoked_at")
    exclude = ("token_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # `manage.py create_api_token NAME` prints the token once

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so the name stays recognisable in the audit log

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")
