"""The authenticated no-op: what every API call costs before it does any work.

`GET /api/ping` goes through the same middleware, the same bearer-token
authentication and the same scope check as `select` and `report`, then
answers `{}`. The benchmark (`make bench`) measures it next to the real
endpoints so their cost can be read as a ratio to this floor.
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework.response import Response
from rest_framework.views import APIView


class PingView(APIView):
    @extend_schema(responses=inline_serializer("PingAnswer", fields={}), summary="Authenticated no-op")
    def get(self, request):
        return Response({})
