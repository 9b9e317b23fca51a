"""Operator actions: each one a form asking for a reason, and one call to the same service the API uses.

Views here only validate a form, call the service with `now` and the
operator as actor, and say what happened with a message. Bad input or a
refused change answers with a message and changes nothing.
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from console.ui import views
from console.ui.decorators import operator, staff_required
from console.ui.display import profile_status
from console.ui.forms import (
    ConfirmForm,
    OrderForm,
    OverrideForm,
    ProviderSettingsForm,
    ReasonForm,
    StrategyForm,
)
from profiles import services as profile_services
from profiles.errors import ServiceError
from profiles.models import AuthProfile, Provider
from sessions_app import services as session_services
from sessions_app.models import Session


@method_decorator(staff_required, name="dispatch")
class Action(View):
    """GET shows the form (a confirm page for destructive actions); POST performs it."""

    form_class = ReasonForm
    template_name = "console/action.html"
    title = ""
    button = "Apply"
    destructive = False
    explanation = ""

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.target = None

    # The parts each action fills in.
    def load(self):
        """Find what the action is about (404 when it does not exist)."""

    def form_kwargs(self):
        return {}

    def perform(self, form, now, actor):
        """Call the service with `form.cleaned_data`; return the success message."""
        raise NotImplementedError

    def default_next(self):
        return reverse("console:providers")

    def context(self):
        return {}

    # The machinery.
    def next_url(self):
        wanted = self.request.POST.get("next") or self.request.GET.get("next")
        if wanted and url_has_allowed_host_and_scheme(wanted, {self.request.get_host()},
                                                      require_https=self.request.is_secure()):
            return wanted
        return self.default_next()

    def page(self, form, status=200):
        return render(self.request, self.template_name, {
            "form": form, "title": self.title, "button": self.button, "destructive": self.destructive,
            "explanation": self.explanation, "next": self.next_url(), "target": self.target, "nav": self.nav,
            "now": timezone.now(), **self.context(),
        }, status=status)

    nav = "providers"

    def get(self, request, *args, **kwargs):
        self.load()
        return self.page(self.form_class(**self.form_kwargs()))

    def post(self, request, *args, **kwargs):
        self.load()
        form = self.form_class(request.POST, **self.form_kwargs())
        if not form.is_valid():
            # Said once: a line on top, the details beside the fields they concern.
            messages.error(request, "Nothing changed: see the form below.")
            return self.page(form, status=400)
        try:
            message = self.perform(form, timezone.now(), operator(request))
        except ServiceError as error:
            messages.error(request, f"Nothing changed: {error.message}")
            return self.page(form, status=400)
        messages.success(request, message)
        return redirect(self.next_url())


# ---------------------------------------------------------------- profiles


class ProfileAction(Action):
    def load(self):
        self.target = AuthProfile.objects.select_related("provider").filter(pk=self.kwargs["profile_id"]).first()
        if self.target is None:
            raise Http404("unknown profile")

    def context(self):
        return {"profile": self.target, "status": profile_status(self.target, timezone.now())}


class ClearCooldown(ProfileAction):
    title = "Clear cooldown"
    button = "Clear cooldown"
    explanation = "The profile becomes available now (its model cooldowns too). Error counts stay, as after any expiry."

    def perform(self, form, now, actor):
        data = form.cleaned_data
        profile_services.clear_cooldown(self.target.id, now, actor, data["reason"])
        return f"Cooldown of {self.target.id} cleared."


class DisableProfile(ProfileAction):
    form_class = ConfirmForm
    title = "Switch off profile"
    button = "Switch off"
    destructive = True
    explanation = ("No new session will get this profile until an operator switches it on again. "
                   "Sessions pinned to it by a user keep their pin but cannot use it.")

    def perform(self, form, now, actor):
        data = form.cleaned_data
        profile_services.disable_profile(self.target.id, now, actor, data["reason"])
        return f"{self.target.id} switched off."


class EnableProfile(ProfileAction):
    title = "Switch on profile"
    button = "Switch on"
    explanation = "Switches the profile on and ends any disablement now. Error counts stay."

    def perform(self, form, now, actor):
        data = form.cleaned_data
        profile_services.enable_profile(self.target.id, now, actor, data["reason"])
        return f"{self.target.id} switched on."


# ---------------------------------------------------------------- providers


class ProviderAction(Action):
    """The provider's page: its profiles in order, with the strategy and the order forms."""

    template_name = "console/provider.html"

    def load(self):
        self.target = Provider.objects.select_related("last_good").filter(pk=self.kwargs["provider_id"]).first()
        if self.target is None:
            raise Http404("unknown provider")
        self.profiles = list(AuthProfile.objects.filter(provider=self.target).order_by("position", "id"))
        self.bound = None

    def page(self, form, status=200):
        self.bound = form
        return super().page(form, status)

    def context(self):
        now = timezone.now()
        bound = self.bound
        return {
            "provider": self.target,
            "rows": [(p, profile_status(p, now)) for p in self.profiles],
            "strategy_form": bound if isinstance(bound, StrategyForm)
            else StrategyForm(initial={"strategy": self.target.strategy}),
            "order_form": bound if isinstance(bound, OrderForm) else OrderForm(profiles=self.profiles),
            "settings_form": bound if isinstance(bound, ProviderSettingsForm) else ProviderSettingsForm(initial={
                "cooldown_ladder_seconds": ", ".join(str(step) for step in self.target.cooldown_ladder_seconds),
                "track_failures": self.target.track_failures,
                "aliases": ", ".join(self.target.aliases.values_list("alias", flat=True)),
            }),
        }

    def default_next(self):
        return reverse("console:provider", args=[self.target.id])


class ProviderPage(ProviderAction):
    http_method_names = ["get", "head"]

    def get(self, request, *args, **kwargs):
        self.load()
        return self.page(None)


class ChangeStrategy(ProviderAction):
    form_class = StrategyForm
    http_method_names = ["post"]

    def perform(self, form, now, actor):
        strategy = form.cleaned_data["strategy"]
        profile_services.update_provider(self.target.id, now, actor, strategy=strategy,
                                         reason=form.cleaned_data["reason"])
        return f"{self.target.id} now uses the {strategy} strategy."


class Reorder(ProviderAction):
    form_class = OrderForm
    http_method_names = ["post"]

    def form_kwargs(self):
        return {"profiles": self.profiles}

    def perform(self, form, now, actor):
        order = form.ordered_ids()
        profile_services.reorder_profiles(self.target.id, order, now, actor, form.cleaned_data["reason"])
        return f"New order for {self.target.id}: {', '.join(order)}."


class ChangeSettings(ProviderAction):
    form_class = ProviderSettingsForm
    http_method_names = ["post"]

    def perform(self, form, now, actor):
        data = form.cleaned_data
        profile_services.update_provider(self.target.id, now, actor, reason=data["reason"],
                                         cooldown_ladder_seconds=data["cooldown_ladder_seconds"],
                                         track_failures=data["track_failures"], aliases=data["aliases"])
        return f"Settings of {self.target.id} saved."


# ---------------------------------------------------------------- sessions


class SessionAction(Action):
    nav = "sessions"

    def load(self):
        self.target = (Session.objects.select_related("last_profile", "provider").prefetch_related(views.PINS)
                       .filter(session_key=self.kwargs["session_key"]).first())
        if self.target is None:
            raise Http404("unknown session")

    def default_next(self):
        return reverse("console:session", args=[self.target.session_key])

    def context(self):
        return {"session": self.target, "pins": views.pin_rows(self.target, timezone.now())}


class SetOverride(SessionAction):
    form_class = OverrideForm
    title = "Set a user override"
    button = "Pin"
    explanation = ("A user override is never rotated away by failover and carries over to new sessions, "
                   "even while its profile cools down.")

    def form_kwargs(self):
        return {"provider_id": self.target.provider_id}

    def perform(self, form, now, actor):
        data = form.cleaned_data
        session_services.set_user_override(session_key=self.target.session_key, profile=data["profile"], now=now,
                                           actor=actor, reason=data["reason"])
        return f"{self.target.session_key} pinned to {data['profile']} (user override)."


class ClearOverride(SessionAction):
    form_class = ConfirmForm
    title = "Clear the override"
    button = "Clear override"
    destructive = True
    explanation = "The session goes back to the provider's order at its next request."

    def perform(self, form, now, actor):
        data = form.cleaned_data
        was = ", ".join(pin.profile_id for pin in self.target.pins.all())
        session_services.clear_override(session_key=self.target.session_key, now=now, actor=actor,
                                        reason=data["reason"])
        if not was:
            return f"{self.target.session_key} had no override; nothing to clear."
        return f"Override of {self.target.session_key} ({was}) cleared."
