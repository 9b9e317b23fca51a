"""The client's address behind trusted reverse proxies (django-axes counts failed logins by it).

`AUTHBROKER_TRUSTED_PROXIES` lists the proxies' addresses or networks. When the
direct peer (`REMOTE_ADDR`) is one of them, `X-Forwarded-For` is read from the
right, skipping trusted hops: the first address that is not a trusted proxy is
the client. Entries to its left were written by the client itself and are never
believed, so nobody can borrow an operator's address by sending the header.
Without trusted proxies (the default) the client is `REMOTE_ADDR`.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _networks(entries):
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(request):
    peer = request.META.get("REMOTE_ADDR", "")
    trusted = _networks(tuple(settings.AUTHBROKER_TRUSTED_PROXIES))
    if not trusted:
        return peer
    client = _address(peer)

    def is_trusted(address):
        return any(address in network for network in trusted)

    if client is None or not is_trusted(client):
        return peer
    hops = [hop for value in request.headers.get("X-Forwarded-For", "").split(",") if (hop := value.strip())]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage from the client's side: the last proxy that wrote a good hop is where we stop
        client = address
        if not is_trusted(address):
            break
    return str(client)
