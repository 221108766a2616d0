"""The one error type users see for bad input: it names the field or file and the fix."""


class ConfigError(ValueError):
    """A configuration, path or dataset problem detected before any expensive work starts."""
