"""Static file names: hashed and compressed once collected, plain before (no build step needed to run tests)."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """whitenoise's compressed, hashed storage that falls back to the plain name when nothing was collected.

    With a manifest (after `collectstatic`) every URL names the hashed file, which whitenoise serves compressed
    with a year's cache. Without one (a fresh clone's tests) the plain name is served from the app's folder by
    whitenoise's finders (`WHITENOISE_USE_FINDERS`).
    """

    manifest_strict = False

    def create_compressor(self, **kwargs):
        # gzip only: brotli at its best level takes minutes over Swagger UI and Redoc on a small machine, and
        # every browser takes gzip.
        return super().create_compressor(**{**kwargs, "use_brotli": False})

    def stored_name(self, name):
        try:
            return super().stored_name(name)
        except ValueError:  # not collected: no manifest entry and no file to hash
            return name
