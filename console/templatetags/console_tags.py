from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.simple_tag
def stamp(value, now=None):
    """A time in UTC with how long ago (or until) it is; '—' when empty."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    now = now or timezone.now()
    if abs((value - now).total_seconds()) < 60:
        relative = "just now"
    else:
        relative = f"{timesince(value, now)} ago" if value <= now else f"in {timeuntil(value, now)}"
    exact = timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    return format_html('<time datetime="{}" title="{} UTC ({})">{}</time> <span class="rel">{}</span>',
                       value.isoformat(), exact, relative, exact, relative)


@register.simple_tag
def countdown(until, now=None):
    """A deadline that counts down live in the browser (console.js) and reads correctly without it."""
    now = now or timezone.now()
    seconds = max(int((until - now).total_seconds()), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    left = f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    return format_html('<span class="countdown" data-until="{}" data-now="{}">{} left</span>',
                       until.isoformat(), now.isoformat(), left)


@register.simple_tag
def profile_link(profile_id):
    """A profile id that opens the profile's page; '—' when empty."""
    if not profile_id:
        return mark_safe('<span class="muted">—</span>')
    return format_html('<a class="mono profile-link" href="{}">{}</a>', reverse("console:profile", args=[profile_id]),
                       profile_id)


@register.filter
def key_breaks(value):
    """A session key or id that wraps at its `:` separators, not in the middle of a part."""
    if not value:
        return value
    return mark_safe(":<wbr>".join(conditional_escape(part) for part in str(value).split(":")))
