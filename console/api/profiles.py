"""Provider and profile endpoints. Reading needs a gateway token; changing needs `admin`."""

from collections import defaultdict

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from console.api.auth import AdminScope, GatewayScope
from console.api.profile_serializers import (
    ActionRequest,
    ProfileCreateRequest,
    ProfilePatchRequest,
    ProfileStateSerializer,
    ProviderPatchRequest,
    ProviderStateSerializer,
)
from console.api.sessions import actor, validated
from profiles import services
from profiles.models import AuthProfile, Provider, ProviderAlias
from profiles.presenters import profile_state, provider_state
from sessions_app import services as session_services


class WritesNeedAdmin:
    """GET with any gateway token; anything else with an admin token."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [GatewayScope()]
        return [AdminScope()]


class ProfileListView(WritesNeedAdmin, APIView):
    @extend_schema(responses=ProfileStateSerializer(many=True),
                   parameters=[OpenApiParameter("provider", str, description="only this provider's profiles")])
    def get(self, request):
        queryset = AuthProfile.objects.all()
        if request.query_params.get("provider"):
            queryset = queryset.filter(provider_id=services.resolve_provider_id(request.query_params["provider"]))
        now = timezone.now()
        return Response([profile_state(p, now) for p in queryset])

    @extend_schema(request=ProfileCreateRequest, responses={201: ProfileStateSerializer})
    def post(self, request):
        data = validated(ProfileCreateRequest, request)
        now = timezone.now()
        profile = services.create_profile(data.pop("id"), data.pop("kind"), data.pop("secret"), now, actor(request),
                                          **data)
        return Response(profile_state(profile, now), status=status.HTTP_201_CREATED)


class ProfileDetailView(WritesNeedAdmin, APIView):
    @extend_schema(responses=ProfileStateSerializer)
    def get(self, request, profile_id):
        return Response(profile_state(services.get_profile(profile_id, "id"), timezone.now()))

    @extend_schema(request=ProfilePatchRequest, responses=ProfileStateSerializer)
    def patch(self, request, profile_id):
        data = validated(ProfilePatchRequest, request)
        now = timezone.now()
        profile = services.update_profile(profile_id, now, actor(request), **data)
        return Response(profile_state(profile, now))

    @extend_schema(request=ActionRequest, responses={200: ProfileStateSerializer})
    def delete(self, request, profile_id):
        """Delete a profile; answers with its last state."""
        data = validated(ActionRequest, request) if request.data else {}
        now = timezone.now()
        profile = session_services.delete_profile(profile_id, now, actor(request), **data)
        return Response(profile_state(profile, now))


class ProfileActionView(APIView):
    """clear-cooldown, disable and enable: operator actions, audited."""

    permission_classes = [AdminScope]
    operation = None

    @extend_schema(request=ActionRequest, responses=ProfileStateSerializer)
    def post(self, request, profile_id):
        data = validated(ActionRequest, request)
        now = timezone.now()
        profile = self.operation(profile_id, now, actor(request), **data)
        return Response(profile_state(profile, now))


def _aliases_by_provider():
    aliases = defaultdict(list)
    for alias, provider_id in ProviderAlias.objects.values_list("alias", "provider_id"):
        aliases[provider_id].append(alias)
    return aliases


class ProviderListView(APIView):
    @extend_schema(responses=ProviderStateSerializer(many=True))
    def get(self, request):
        now = timezone.now()
        profiles = defaultdict(list)
        for profile in AuthProfile.objects.all():
            profiles[profile.provider_id].append(profile)
        aliases = _aliases_by_provider()
        return Response([provider_state(p, profiles[p.id], aliases[p.id], now) for p in Provider.objects.all()])


class ProviderDetailView(WritesNeedAdmin, APIView):
    def _present(self, provider):
        provider = Provider.objects.get(pk=provider.pk)
        return provider_state(provider, list(provider.profiles.all()),
                              sorted(provider.aliases.values_list("alias", flat=True)), timezone.now())

    @extend_schema(responses=ProviderStateSerializer)
    def get(self, request, provider_id):
        return Response(self._present(services.get_provider(provider_id, "id")))

    @extend_schema(request=ProviderPatchRequest, responses=ProviderStateSerializer)
    def patch(self, request, provider_id):
        data = validated(ProviderPatchRequest, request)
        provider = services.update_provider(provider_id, timezone.now(), actor(request), **data)
        return Response(self._present(provider))

