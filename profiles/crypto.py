"""Secrets at rest: Fernet with a key ring (`AUTHBROKER_ENCRYPTION_KEYS`, newest first).

Encryption always uses the newest key; decryption tries each key, so keys can
be rotated without downtime and `rotate_secrets` re-encrypts with the newest.
Without configured keys (a development checkout) a key is derived from
SECRET_KEY; `check --deploy` warns about that. Once keys are configured the
derived key stays in the ring *for decryption only* (last, so nothing new is
encrypted with it): secrets stored before the keys were set stay readable until
`rotate_encryption_keys` has re-encrypted them, and the `authbroker.W004` check
warns while any still needs it. After that the derived key reads nothing stored.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class Secret(str):
    """A credential in memory: the value itself for encryption, only its mask for `repr()` and `str()`.

    Tracebacks, exception reports, log lines and f-strings that touch a secret
    (a view's validated data, a service's arguments) show `sk-a…f9c2`, never the key.
    """

    __slots__ = ()

    def __new__(cls, value=""):
        if isinstance(value, Secret):
            return value  # str(value) would be the mask
        return super().__new__(cls, value)

    def reveal(self):
        """The value as a plain `str` (for the one answer that hands credentials out)."""
        return str.__str__(self)

    def __repr__(self):
        return f"<Secret {mask(self)}>"

    def __str__(self):
        return mask(self)

    def __format__(self, spec):
        return mask(self)


class SecretUnreadable(Exception):
    """No configured key can decrypt a stored secret."""


def _derived_key():
    digest = hashlib.sha256(f"authbroker-secrets:{settings.SECRET_KEY}".encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=8)
def _ring(keys):
    fernets = []
    for key in keys:
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise ImproperlyConfigured(
                "AUTHBROKER_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with `manage.py generate_encryption_key`)"
            ) from None
    return MultiFernet(fernets)


def keyring():
    """Encrypts with the newest configured key (or the derived one when none is); decrypts with any of them,
    the derived key included (the way off the development key, see the module's docstring)."""
    derived = _derived_key().decode()
    configured = tuple(key for key in settings.AUTHBROKER_ENCRYPTION_KEYS if key != derived)
    return _ring((*configured, derived))


def needs_derived_key(token):
    """True when configured keys exist and only the key derived from SECRET_KEY reads this stored secret."""
    if not token or not settings.AUTHBROKER_ENCRYPTION_KEYS:
        return False
    try:
        _ring(tuple(settings.AUTHBROKER_ENCRYPTION_KEYS)).decrypt(token.encode())
    except InvalidToken:
        try:
            Fernet(_derived_key()).decrypt(token.encode())
        except InvalidToken:
            return False  # unreadable by every key: rotation reports it
        return True
    return False


def encrypt(plaintext):
    return keyring().encrypt(plaintext.encode()).decode()


def decrypt(token):
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured encryption key can read this secret") from None


def rotate(token):
    """Re-encrypt a stored secret with the newest key."""
    try:
        return keyring().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured encryption key can read this secret") from None


def mask(secret):
    """A recognisable but useless view of a secret: `sk-a…f9c2`."""
    if not secret:
        return ""
    if len(secret) >= 16:
        return f"{secret[:4]}…{secret[-4:]}"  # slices of a Secret are plain str
    if len(secret) >= 8:
        return f"…{secret[-2:]}"
    return "…"
