"""Strict serializer building blocks: wrong types are refused, never coerced."""

import math
from datetime import UTC

from django.utils.dateparse import parse_datetime
from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["expected a JSON object"]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if "\x00" in data:
            raise serializers.ValidationError("must not contain NUL characters")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("must be an integer")
        return super().to_internal_value(data)


class NonNegativeNumberField(serializers.FloatField):
    """A number ≥ 0; integers too large for a float are capped rather than overflowing."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float) or data < 0:
            raise serializers.ValidationError("must be a number ≥ 0")
        if isinstance(data, float) and not math.isfinite(data):
            raise serializers.ValidationError("must be a finite number")
        return float(min(data, 10**9))


class ZonedDateTimeField(serializers.DateTimeField):
    """An ISO 8601 timestamp that names its zone (`Z` or an offset); a naive or unparsable value is refused."""

    def to_internal_value(self, data):
        if not isinstance(data, str) or len(data) > 64:
            raise serializers.ValidationError("must be an ISO 8601 timestamp with a zone")
        try:
            value = parse_datetime(data.strip())
        except ValueError:
            value = None
        if value is None:
            raise serializers.ValidationError("must be an ISO 8601 timestamp with a zone")
        if value.tzinfo is None:
            raise serializers.ValidationError("must name its zone (Z or an offset such as +02:00)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise serializers.ValidationError("out of range") from None
