"""Request validation and response shapes of the provider and profile endpoints (DESIGN §3)."""

from rest_framework import serializers

from console.api.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    ZonedDateTimeField,
)
from profiles.crypto import Secret
from profiles.models import Kind, Strategy

# ---------------------------------------------------------------- responses


class ProfileStateSerializer(serializers.Serializer):
    id = serializers.CharField()
    provider = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Kind.values)
    position = serializers.IntegerField(min_value=0)
    enabled = serializers.BooleanField()
    available = serializers.BooleanField()
    error_count = serializers.IntegerField(min_value=0)
    cooldown_until = serializers.DateTimeField(allow_null=True)
    cooldown_reason = serializers.CharField(allow_null=True)
    disabled_until = serializers.DateTimeField(allow_null=True)
    disabled_reason = serializers.CharField(allow_null=True)
    last_used = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    failure_counts = serializers.DictField(child=serializers.IntegerField())
    secret_mask = serializers.CharField(allow_blank=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class ProviderStateSerializer(serializers.Serializer):
    id = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())
    strategy = serializers.ChoiceField(choices=Strategy.values)
    cooldown_ladder_seconds = serializers.ListField(child=serializers.IntegerField())
    track_failures = serializers.BooleanField()
    last_good = serializers.CharField(allow_null=True)
    profiles = ProfileStateSerializer(many=True)


# ---------------------------------------------------------------- requests


class SecretField(StrictCharField):
    """A write-only credential; validated data holds a `Secret`, whose repr is only its mask."""

    def __init__(self, **kwargs):
        super().__init__(max_length=8192, write_only=True, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        return Secret(super().to_internal_value(data))


class ProfileCreateRequest(StrictSerializer):
    id = StrictCharField(max_length=255)
    kind = serializers.ChoiceField(choices=Kind.values)
    secret = SecretField()
    position = StrictIntegerField(required=False, min_value=0, max_value=1_000_000)
    enabled = StrictBooleanField(required=False, default=True)
    expires_at = ZonedDateTimeField(required=False, allow_null=True)
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class ProfilePatchRequest(StrictSerializer):
    kind = serializers.ChoiceField(choices=Kind.values, required=False)
    secret = SecretField(required=False)
    position = StrictIntegerField(required=False, min_value=0, max_value=1_000_000)
    enabled = StrictBooleanField(required=False)
    expires_at = ZonedDateTimeField(required=False, allow_null=True,
                                    help_text="null removes it; writing a new secret without it removes it too")
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class ActionRequest(StrictSerializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class ProviderPatchRequest(StrictSerializer):
    strategy = serializers.ChoiceField(choices=Strategy.values, required=False)
    cooldown_ladder_seconds = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=86400), required=False, min_length=1, max_length=20
    )
    aliases = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=20)
    track_failures = StrictBooleanField(required=False)
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)
