"""Request validation and response shapes of the session endpoints (DESIGN §3)."""

from rest_framework import serializers

from console.api.fields import (
    NonNegativeNumberField,
    StrictBooleanField,
    StrictCharField,
    StrictSerializer,
)
from console.api.profile_serializers import ProfileStateSerializer
from profiles.models import Event
from profiles.presenters import iso
from profiles.rules import OUTCOMES
from sessions_app.leases import MAX_LENGTH as LEASE_MAX_LENGTH
from sessions_app.services import RESET_REASONS, override_state, overrides_state

# ---------------------------------------------------------------- requests


class SelectRequest(StrictSerializer):
    session_key = StrictCharField(max_length=255, help_text="The gateway's stable slot for the chat.")
    provider = StrictCharField(max_length=64, help_text="Provider id or alias.")
    new_session = StrictBooleanField(required=False, default=False,
                                     help_text="A session boundary (/new): auto pins are dropped, user pins carried.")
    model = StrictCharField(max_length=190, required=False, allow_null=True,
                            help_text="The model the call will use; model-scoped cooldowns apply only with it.")
    explain = StrictBooleanField(required=False, default=False,
                                 help_text="Answer with the ranked candidates the decision was made from.")


class ReportRequest(StrictSerializer):
    profile = StrictCharField(max_length=255, help_text="The profile the call used.")
    outcome = serializers.ChoiceField(choices=OUTCOMES, help_text="How the call went.")
    session_key = StrictCharField(max_length=255, required=False, allow_null=True,
                                  help_text="The session the call was for; a failure then fails it over.")
    lease_id = StrictCharField(max_length=LEASE_MAX_LENGTH, required=False, allow_null=True,
                               help_text="The select answer's lease_id: a retried report changes nothing.")
    model = StrictCharField(max_length=190, required=False, allow_null=True,
                            help_text="With rate_limit or model_not_found, only this model cools.")
    retry_after_seconds = NonNegativeNumberField(required=False, allow_null=True,
                                                 help_text="The upstream's Retry-After: lengthens, never shortens.")
    detail = StrictCharField(max_length=2000, required=False, allow_blank=True, allow_null=True,
                             help_text="Free text for the audit log (the upstream's message).")


class ResetRequest(StrictSerializer):
    provider = StrictCharField(max_length=64)
    reason = serializers.ChoiceField(choices=RESET_REASONS, required=False, default="reset")
    model = StrictCharField(max_length=190, required=False, allow_null=True)


class BulkResetRequest(StrictSerializer):
    session_keys = serializers.ListField(child=StrictCharField(max_length=255), required=False, max_length=1000)
    reason = serializers.ChoiceField(choices=RESET_REASONS, required=False, default="restart")


class OverrideRequest(StrictSerializer):
    profile = StrictCharField(max_length=255)
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class ClearOverrideRequest(StrictSerializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


# ---------------------------------------------------------------- responses


class CandidateSerializer(serializers.Serializer):
    profile = serializers.CharField()
    available = serializers.BooleanField()
    reason = serializers.CharField()
    until = serializers.DateTimeField(allow_null=True)


class SecretRefSerializer(serializers.Serializer):
    source = serializers.CharField()
    provider = serializers.CharField()
    id = serializers.CharField()


class CredentialSerializer(serializers.Serializer):
    kind = serializers.CharField()
    secret = serializers.CharField(allow_null=True, help_text="null when the profile holds a reference instead")
    ref = SecretRefSerializer(required=False, help_text="where the gateway resolves the secret (openclaw's "
                                                        "keyRef/tokenRef); only when `secret` is null")


class SelectAnswerSerializer(serializers.Serializer):
    profile = serializers.CharField()
    source = serializers.ChoiceField(choices=["default", "auto", "user"])
    session_key = serializers.CharField()
    session_id = serializers.UUIDField()
    lease_id = serializers.CharField()
    reason = serializers.CharField()
    cooling = serializers.BooleanField()
    all_unavailable = serializers.BooleanField()
    retry_at = serializers.DateTimeField(allow_null=True)
    candidates = CandidateSerializer(many=True, required=False)
    credential = CredentialSerializer(required=False)


class FailoverSerializer(serializers.Serializer):
    profile = serializers.CharField()
    source = serializers.ChoiceField(choices=["auto"])


class ReportAnswerSerializer(serializers.Serializer):
    profile = ProfileStateSerializer()
    failover = FailoverSerializer(allow_null=True)
    duplicate = serializers.BooleanField()


class OverrideStateSerializer(serializers.Serializer):
    profile = serializers.CharField()
    source = serializers.ChoiceField(choices=["auto", "user"])
    set_at = serializers.DateTimeField(allow_null=True)
    set_by = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)


class PinStateSerializer(OverrideStateSerializer):
    provider = serializers.CharField()


class SessionStateSerializer(serializers.Serializer):
    session_key = serializers.CharField()
    session_id = serializers.UUIDField()
    provider = serializers.CharField(allow_null=True)
    override = OverrideStateSerializer(allow_null=True, help_text="the pin for the session's current provider")
    overrides = PinStateSerializer(many=True, help_text="every pin of the session, one per provider")
    last_profile = serializers.CharField(allow_null=True)
    last_activity_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class ResetAnswerSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    carried = serializers.CharField(allow_null=True)
    dropped = serializers.CharField(allow_null=True)
    selection = SelectAnswerSerializer()


class BulkResetAnswerSerializer(serializers.Serializer):
    reset = serializers.IntegerField()
    dropped = serializers.IntegerField()
    carried = serializers.IntegerField()


class Timestamp(serializers.DateTimeField):
    """The API's one timestamp format, as in every other answer: ISO 8601 with its zone, `+00:00`."""

    def to_representation(self, value):
        return iso(value)


class OptionalName(serializers.CharField):
    """An id the event may not have: null when absent, never ""."""

    def to_representation(self, value):
        return value or None


class EventSerializer(serializers.ModelSerializer):
    at = Timestamp()
    profile = OptionalName(source="profile_id", allow_null=True)
    provider = OptionalName(source="provider_id", allow_null=True)

    class Meta:
        model = Event
        fields = ["id", "at", "kind", "actor", "reason", "source", "session_key", "profile", "provider", "model",
                  "before", "after"]


# ---------------------------------------------------------------- presenting


def selection_answer(selection, include_credential=False):
    answer = {
        "profile": selection.profile.id,
        "source": str(selection.source),
        "session_key": selection.session.session_key,
        "session_id": str(selection.session.session_id),
        "lease_id": selection.lease_id,
        "reason": selection.reason,
        "cooling": selection.cooling,
        "all_unavailable": selection.all_unavailable,
        "retry_at": iso(selection.retry_at),
    }
    if selection.candidates is not None:
        answer["candidates"] = [
            {"profile": c.profile.id, "available": c.available,
             "reason": ("chosen: " if c.profile.id == selection.profile.id else "") + c.reason,
             "until": iso(c.until)}
            for c in selection.candidates
        ]
    if include_credential:
        secret = selection.secret if selection.secret is not None else selection.profile.reveal_secret()
        if not secret and selection.secret_ref is not None:
            answer["credential"] = {"kind": selection.profile.kind, "secret": None, "ref": selection.secret_ref}
        else:
            answer["credential"] = {"kind": selection.profile.kind, "secret": secret}
    return answer


def session_state(session):
    return {
        "session_key": session.session_key,
        "session_id": str(session.session_id),
        "provider": session.provider_id,
        "override": _without_provider(override_state(session)),
        "overrides": overrides_state(session),
        "last_profile": session.last_profile_id,
        "last_activity_at": iso(session.last_activity_at),
        "updated_at": iso(session.updated_at),
    }


def _without_provider(pin):
    if pin is None:
        return None
    return {name: value for name, value in pin.items() if name != "provider"}
