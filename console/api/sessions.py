"""Gateway endpoints: select, report, reset, overrides, sessions and the audit log.

Views are thin: authenticate, validate, call one service, present the answer.
"""

import django_filters
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics, pagination
from rest_framework.response import Response
from rest_framework.views import APIView

from console import observability
from console.api.session_serializers import (
    BulkResetAnswerSerializer,
    BulkResetRequest,
    ClearOverrideRequest,
    EventSerializer,
    OverrideRequest,
    ReportAnswerSerializer,
    ReportRequest,
    ResetAnswerSerializer,
    ResetRequest,
    SelectAnswerSerializer,
    SelectRequest,
    SessionStateSerializer,
    selection_answer,
    session_state,
)
from profiles.models import Event, EventKind
from sessions_app import services


def validated(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def actor(request):
    return f"token:{request.auth.name}"[:150]


class SelectView(APIView):
    @extend_schema(
        request=SelectRequest, responses=SelectAnswerSerializer, summary="Which profile now?",
        description="The profile this session should use for its next call, and why. A continuing session keeps "
                    "its profile while it is available; a new one gets its user pin or the first available profile "
                    "in the provider's order. Answers 200 even when every profile is out (`all_unavailable`, "
                    "`retry_at`). Send the `lease_id` back with the report.",
        examples=[OpenApiExample("continuing session", request_only=True, value={
            "session_key": "agent:main:telegram:dm:42", "provider": "anthropic", "model": "claude-sonnet-4-5"}),
                  OpenApiExample("new session, explained", request_only=True, value={
            "session_key": "agent:main:telegram:dm:42", "provider": "anthropic", "new_session": True,
            "explain": True})])
    def post(self, request):
        data = validated(SelectRequest, request)
        with_secret = request.auth.has_scope("credentials")
        selection = services.select_profile(now=timezone.now(), actor=actor(request), with_secret=with_secret, **data)
        observability.count_selection(selection)
        return Response(selection_answer(selection, with_secret))


class ReportView(APIView):
    @extend_schema(
        request=ReportRequest, responses=ReportAnswerSerializer, summary="Report a call's outcome",
        description="How a call on a profile went. `success` clears the profile's windows; `rate_limit`, "
                    "`timeout`, `unknown`, `model_not_found` and `auth` start a cooldown from the provider's ladder; "
                    "`billing` and `auth_permanent` disable it; `overloaded`, `server_error` and `format` are only "
                    "recorded. When the session was on the failed profile it fails over (`failover`). A retried "
                    "report on the same lease answers the first answer with `duplicate: true`.",
        examples=[OpenApiExample("rate limited", request_only=True, value={
            "profile": "anthropic:default", "outcome": "rate_limit", "session_key": "agent:main:telegram:dm:42",
            "model": "claude-sonnet-4-5", "retry_after_seconds": 30, "detail": "429 from upstream"}),
                  OpenApiExample("success", request_only=True, value={
            "profile": "anthropic:default", "outcome": "success", "session_key": "agent:main:telegram:dm:42"})])
    def post(self, request):
        data = validated(ReportRequest, request)
        answer = services.report_outcome(now=timezone.now(), actor=actor(request), **data)
        observability.count_report(data["outcome"], answer)
        return Response(answer)


class SessionResetView(APIView):
    @extend_schema(request=ResetRequest, responses=ResetAnswerSerializer, summary="Session boundary")
    def post(self, request, session_key):
        data = validated(ResetRequest, request)
        with_secret = request.auth.has_scope("credentials")
        result = services.reset_session(session_key=session_key, now=timezone.now(), actor=actor(request),
                                        with_secret=with_secret, **data)
        return Response({
            "session_id": str(result.session.session_id),
            "carried": result.carried,
            "dropped": result.dropped,
            "selection": selection_answer(result.selection, with_secret),
        })


class BulkResetView(APIView):
    @extend_schema(request=BulkResetRequest, responses=BulkResetAnswerSerializer, summary="Boundary for many",
                   operation_id="sessions_bulk_reset")
    def post(self, request):
        data = validated(BulkResetRequest, request)
        return Response(services.bulk_reset(now=timezone.now(), actor=actor(request), **data))


class SessionDetailView(APIView):
    @extend_schema(responses=SessionStateSerializer, summary="A session and its override's provenance")
    def get(self, request, session_key):
        return Response(session_state(services.get_session(session_key)))


class SessionOverrideView(APIView):
    @extend_schema(request=OverrideRequest, responses=SessionStateSerializer, summary="Set a user override")
    def put(self, request, session_key):
        data = validated(OverrideRequest, request)
        session = services.set_user_override(session_key=session_key, now=timezone.now(), actor=actor(request),
                                             **data)
        return Response(session_state(session))

    @extend_schema(request=ClearOverrideRequest, responses={200: SessionStateSerializer}, summary="Clear pins",
                   parameters=[OpenApiParameter("provider", str, description="only this provider's pin (v2); "
                                                "without it, every pin of the session")])
    def delete(self, request, session_key):
        data = validated(ClearOverrideRequest, request) if request.data else {}
        session = services.clear_override(session_key=session_key, now=timezone.now(), actor=actor(request),
                                          provider=request.query_params.get("provider"), **data)
        return Response(session_state(session))


class EventPagination(pagination.CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class EventFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=EventKind.choices)
    profile = django_filters.CharFilter(field_name="profile_id")
    provider = django_filters.CharFilter(field_name="provider_id")
    session_key = django_filters.CharFilter()
    source = django_filters.CharFilter()
    actor = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["kind", "profile", "provider", "session_key", "source", "actor", "since", "until"]


class EventListView(generics.ListAPIView):
    """All events, newest first."""

    queryset = Event.objects.all()
    serializer_class = EventSerializer
    pagination_class = EventPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = EventFilter


class SessionEventsView(generics.ListAPIView):
    """One session's events, newest first."""

    serializer_class = EventSerializer
    pagination_class = EventPagination

    def get_queryset(self):
        session = services.get_session(self.kwargs["session_key"])
        return Event.objects.filter(session_key=session.session_key)
