"""Admin for providers and profiles. Changes go through `profiles.services`, so they are audited like any other.

Usage stats are read-only; secrets are write-only (a new one may be typed in,
only the mask is ever shown; the encrypted columns are never on a page).
"""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from console.admin.sessions import ReadOnlyAdmin
from console.ui.decorators import operator
from console.ui.display import profile_status
from profiles import services
from profiles.errors import ServiceError
from profiles.models import AuthProfile, ModelCooldown, Provider, ProviderAlias
from sessions_app import services as session_services

USAGE_STATS = ("error_count", "failure_counts", "cooldown_until", "cooldown_reason", "disabled_until",
               "disabled_reason", "last_used", "last_success_at", "last_failure_at")


def _apply(modeladmin, request, queryset, operation, done):
    """Run a profile service over the selected rows and report how many it changed."""
    now, actor, count = timezone.now(), operator(request), 0
    for profile_id in queryset.values_list("pk", flat=True):
        try:
            operation(profile_id, now, actor, f"{done} in the admin")
            count += 1
        except ServiceError as error:
            modeladmin.message_user(request, f"{profile_id}: {error.message}", messages.ERROR)
    modeladmin.message_user(request, f"{done}: {count} profile{'s' if count != 1 else ''}.", messages.SUCCESS)


class ProviderAliasInline(admin.TabularInline):
    model = ProviderAlias
    extra = 0
    can_delete = False
    readonly_fields = ("alias",)

    def has_add_permission(self, request, obj=None):
        return False


class ProviderForm(forms.ModelForm):
    aliases_text = forms.CharField(label="Aliases", required=False, help_text="Comma-separated provider slugs.")

    class Meta:
        model = Provider
        fields = ("strategy", "cooldown_ladder_seconds", "track_failures")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["aliases_text"].initial = ", ".join(self.instance.aliases.values_list("alias", flat=True))


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("id", "strategy", "track_failures", "last_good", "updated_at")
    list_select_related = ("last_good",)
    readonly_fields = ("id", "last_good", "created_at", "updated_at")
    fields = ("id", "strategy", "cooldown_ladder_seconds", "track_failures", "aliases_text", "last_good",
              "created_at", "updated_at")
    inlines = [ProviderAliasInline]

    def has_add_permission(self, request):
        return False  # providers come with their first profile (API, importer)

    def has_delete_permission(self, request, obj=None):
        return False  # would take its profiles with it, unaudited

    def save_model(self, request, obj, form, change):
        aliases = [a.strip() for a in form.cleaned_data.get("aliases_text", "").split(",") if a.strip()]
        try:
            services.update_provider(obj.pk, timezone.now(), operator(request), strategy=obj.strategy,
                                     cooldown_ladder_seconds=obj.cooldown_ladder_seconds,
                                     track_failures=obj.track_failures, aliases=aliases, reason="changed in the admin")
        except ServiceError as error:
            self.message_user(request, f"Nothing changed: {error.message}", messages.ERROR)

    def save_related(self, request, form, formsets, change):
        pass  # aliases are saved by update_provider


@admin.register(ProviderAlias)
class ProviderAliasAdmin(admin.ModelAdmin):
    list_display = ("alias", "provider")
    list_select_related = ("provider",)

    def has_add_permission(self, request):
        return False  # edited on the provider, through the service

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ProfileForm(forms.ModelForm):
    new_secret = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="Type a new secret to replace the stored one; leave empty to keep it.")

    class Meta:
        model = AuthProfile
        fields = ("kind", "position", "enabled", "expires_at")
        help_texts = {"expires_at": "An API key or token is not used from then on (an OAuth one is only shown). "
                                    "A new secret without a new expiry removes it."}


class ModelCooldownInline(admin.TabularInline):
    model = ModelCooldown
    extra = 0
    can_delete = False
    readonly_fields = ("model", "error_count", "cooldown_until", "cooldown_reason", "last_failure_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AuthProfile)
class AuthProfileAdmin(admin.ModelAdmin):
    form = ProfileForm
    list_display = ("id", "provider", "kind", "position", "enabled", "status", "error_count", "cooldown_until",
                    "disabled_until", "expires_at", "last_used", "secret_mask")
    list_filter = ("provider", "kind", "enabled")
    list_select_related = ("provider",)
    search_fields = ("id",)
    ordering = ("provider_id", "position", "id")
    readonly_fields = ("id", "provider", "name", "secret_mask", "metadata", *USAGE_STATS, "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("id", "provider", "name", "kind", "position", "enabled", "expires_at")}),
        ("Secret (write-only)", {"fields": ("secret_mask", "new_secret")}),
        ("Usage stats", {"fields": USAGE_STATS}),
        ("More", {"fields": ("metadata", "created_at", "updated_at")}),
    )
    inlines = [ModelCooldownInline]
    actions = ["clear_cooldowns", "disable_profiles", "enable_profiles"]

    @admin.display(description="status")
    def status(self, obj):
        status = profile_status(obj, timezone.now())
        return status.label if not status.until else f"{status.label} until {status.until:%Y-%m-%d %H:%M:%S}"

    def has_add_permission(self, request):
        return False  # created through the API or the importer, which take the secret

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        expiry = {"expires_at": data["expires_at"]} if "expires_at" in form.changed_data else {}
        try:
            services.update_profile(obj.pk, timezone.now(), operator(request), kind=data["kind"],
                                    position=data["position"], enabled=data["enabled"],
                                    secret=data.get("new_secret") or None, reason="changed in the admin", **expiry)
        except ServiceError as error:
            self.message_user(request, f"Nothing changed: {error.message}", messages.ERROR)

    def delete_model(self, request, obj):
        session_services.delete_profile(obj.pk, timezone.now(), operator(request), "deleted in the admin")

    def delete_queryset(self, request, queryset):
        for profile_id in queryset.values_list("pk", flat=True):
            session_services.delete_profile(profile_id, timezone.now(), operator(request), "deleted in the admin")

    @admin.action(description="Clear cooldown of the selected profiles")
    def clear_cooldowns(self, request, queryset):
        _apply(self, request, queryset, services.clear_cooldown, "cooldown cleared")

    @admin.action(description="Switch off the selected profiles")
    def disable_profiles(self, request, queryset):
        _apply(self, request, queryset, services.disable_profile, "switched off")

    @admin.action(description="Switch on the selected profiles")
    def enable_profiles(self, request, queryset):
        _apply(self, request, queryset, services.enable_profile, "switched on")


@admin.register(ModelCooldown)
class ModelCooldownAdmin(ReadOnlyAdmin):
    list_display = ("profile", "model", "error_count", "cooldown_until", "cooldown_reason", "last_failure_at")
    list_select_related = ("profile",)
    search_fields = ("profile__id", "model")
    readonly_fields = ("profile", "model", "error_count", "cooldown_until", "cooldown_reason", "last_failure_at")
