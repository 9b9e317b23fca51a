"""factory-boy factories for rows a test needs in bulk; the cast of a scenario still goes through the services."""

import factory
from django.utils import timezone

from profiles.models import AuthProfile, Provider
from sessions_app.models import Pin, Session


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider
        django_get_or_create = ("id",)

    id = "acme"


class ProfileFactory(factory.django.DjangoModelFactory):
    """A profile with an encrypted dummy secret, positions in creation order."""

    class Meta:
        model = AuthProfile

    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"k{n}")
    id = factory.LazyAttribute(lambda o: f"{o.provider.id}:{o.name}")
    kind = "api_key"
    position = factory.Sequence(lambda n: n)

    @factory.post_generation
    def secret(self, create, extracted, **kwargs):
        self.set_secret(extracted or "sk-test-0123456789abcdef")
        if create:
            self.save(update_fields=["secret_encrypted", "secret_mask"])


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    session_key = factory.Sequence(lambda n: f"agent:test:{n}")
    last_activity_at = factory.LazyFunction(timezone.now)


class PinFactory(factory.django.DjangoModelFactory):
    """A pin written directly (no event): seed data for tests about what happens next."""

    class Meta:
        model = Pin

    session = factory.SubFactory(SessionFactory)
    profile = factory.SubFactory(ProfileFactory)
    provider = factory.LazyAttribute(lambda o: o.profile.provider)
    source = "user"
    set_at = factory.LazyFunction(timezone.now)
    set_by = "seed"
    reason = "set by a person"
