"""Forms of the console: filters for the lists and the operator actions.

Forms only check the shape of the input; the service functions decide
whether the change is allowed, exactly as they do for the API.
"""

from django import forms

from profiles.models import AuthProfile, EventKind, Provider, Strategy
from sessions_app.models import OverrideSource

REASON_HELP = "Why? It goes into the audit log."


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, help_text=REASON_HELP,
                             widget=forms.TextInput(attrs={"placeholder": "e.g. ticket #123: user asked for backup1",
                                                           "autocomplete": "off"}))


class ConfirmForm(ReasonForm):
    confirm = forms.BooleanField(label="Yes, I am sure",
                                 error_messages={"required": "Tick the box to confirm."})


class OverrideForm(ReasonForm):
    profile = forms.ChoiceField(label="Pin to profile")

    def __init__(self, *args, provider_id=None, **kwargs):
        super().__init__(*args, **kwargs)
        # A pin belongs to its profile's provider (one pin per provider): the choices are grouped so each
        # group says which provider's pin it sets; the session's current provider comes first.
        groups = {}
        for pid, prov in AuthProfile.objects.order_by("provider_id", "position", "id").values_list("id", "provider_id"):
            groups.setdefault(prov, []).append((pid, pid))
        ordered = sorted(groups, key=lambda prov: (prov != provider_id, prov))
        self.fields["profile"].choices = [("", "choose a profile…"),
                                          *((f"{prov} pin", groups[prov]) for prov in ordered)]
        self.order_fields(["profile", "reason"])


class StrategyForm(ReasonForm):
    strategy = forms.ChoiceField(choices=Strategy.choices)

    field_order = ["strategy", "reason"]


class OrderForm(ReasonForm):
    """One position box per profile; the order is the profiles sorted by the numbers given."""

    def __init__(self, *args, profiles=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles = list(profiles)
        for rank, profile in enumerate(self.profiles):  # 0-based, like the board and the API
            self.fields[f"pos:{profile.id}"] = forms.IntegerField(
                label=profile.id, min_value=0, max_value=10_000, initial=rank,
                widget=forms.NumberInput(attrs={"class": "narrow"}),
            )
        self.order_fields([f"pos:{p.id}" for p in self.profiles] + ["reason"])

    def position_fields(self):
        return [self[f"pos:{p.id}"] for p in self.profiles]

    def ordered_ids(self):
        current = {p.id: i for i, p in enumerate(self.profiles)}
        return sorted(current, key=lambda pid: (self.cleaned_data[f"pos:{pid}"], current[pid]))


class ProviderSettingsForm(ReasonForm):
    """The cooldown ladder, failure tracking and aliases, as `PATCH /api/providers/{id}` changes them."""

    cooldown_ladder_seconds = forms.CharField(
        label="Cooldown ladder (seconds)", max_length=500,
        help_text="Cooldown after the 1st, 2nd, 3rd… failure in a row, comma-separated; the last step repeats.",
        widget=forms.TextInput(attrs={"placeholder": "60, 300, 1500, 3600", "autocomplete": "off"}))
    track_failures = forms.BooleanField(
        label="Track failures", required=False,
        help_text="Off for aggregators (openrouter): their profiles then never cool down.")
    aliases = forms.CharField(
        label="Aliases", required=False, max_length=1000,
        help_text="Other spellings of this provider's id, comma-separated (z.ai, aws-bedrock).",
        widget=forms.TextInput(attrs={"autocomplete": "off"}))

    field_order = ["cooldown_ladder_seconds", "track_failures", "aliases", "reason"]

    def clean_cooldown_ladder_seconds(self):
        steps = [step.strip().removesuffix("s") for step in self.cleaned_data["cooldown_ladder_seconds"].split(",")]
        if not steps or not all(step.isdigit() for step in steps):
            raise forms.ValidationError("Give whole numbers of seconds, comma-separated (e.g. 60, 300, 1500).")
        return [int(step) for step in steps]

    def clean_aliases(self):
        return [alias.strip() for alias in self.cleaned_data["aliases"].split(",") if alias.strip()]


def _provider_choices():
    return [("", "any provider"), *((p, p) for p in Provider.objects.values_list("id", flat=True))]


def _profile_choices(label="any profile"):
    return [("", label), *((p, p) for p in AuthProfile.objects.order_by("provider_id", "position", "id")
                            .values_list("id", flat=True))]


class SessionFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Session key contains", max_length=255)
    provider = forms.ChoiceField(required=False)
    source = forms.ChoiceField(required=False, label="Override", choices=[
        ("", "any"), (OverrideSource.AUTO, "auto (failover)"), (OverrideSource.USER, "user"), ("none", "none"),
    ])
    profile = forms.ChoiceField(required=False, label="Pinned to or on")
    unavailable = forms.BooleanField(required=False, label="On an unavailable profile (pin or last selected)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = _provider_choices()
        self.fields["profile"].choices = _profile_choices()


class EventFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, choices=[("", "any kind"), *EventKind.choices])
    profile = forms.CharField(required=False, max_length=255,
                              widget=forms.TextInput(attrs={"list": "profile-ids", "placeholder": "provider:name"}))
    session = forms.CharField(required=False, label="Session key", max_length=255)
    source = forms.ChoiceField(required=False, choices=[
        ("", "any source"), ("auto", "auto"), ("user", "user"), ("operator", "operator"), ("none", "none"),
    ])
    actor = forms.CharField(required=False, label="Actor contains", max_length=150)
    since = forms.DateTimeField(required=False, label="From (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (UTC)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
