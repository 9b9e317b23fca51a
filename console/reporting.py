"""Exception reports (the DEBUG page, error e-mails) that never show a credential or a bearer token."""

import re
from urllib.parse import urlsplit, urlunsplit

from django.views.debug import SafeExceptionReporterFilter


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, made stricter.

    - `Authorization` headers are hidden like cookies (Django's list misses them);
    - form fields named like secrets are hidden (the admin's `new_secret`);
    - a password inside a URL (`CELERY_BROKER_URL`, `CACHE_URL`, `redis://:pw@host`) is hidden, the rest
      of the URL shown;
    - local variables are filtered in every frame, even with DEBUG on, by name and
      inside dicts and lists (`data["secret"]` in a view frame), not only where a
      function remembered `@sensitive_variables`.
    """

    hidden_settings = re.compile(
        r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|AUTHORIZATION|CREDENTIAL|PLAINTEXT|REFRESH|^RAW$|^HEADER$",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str) and "://" in value:
            return _without_password(value)
        return value

    def is_active(self, request):
        return True

    def get_post_parameters(self, request):
        """Form fields named like secrets (`new_secret`, `password`, …) are hidden even when no view
        declared them with `@sensitive_post_parameters`."""
        params = super().get_post_parameters(request)
        if request is None or not hasattr(params, "copy"):
            return params
        cleansed = params.copy()
        for name in params:
            if self.hidden_settings.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [(name, self.cleanse_setting(name, value))
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]


def _without_password(url):
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{SecretSafeExceptionReporterFilter.cleansed_substitute}@{host}"))
