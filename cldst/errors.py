"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class CldstError(Exception):
    """Base class of errors caused by user input (config values, files, names)."""


class ConfigError(CldstError, ValueError):
    """A configuration field has a value that is not allowed."""


class DataError(CldstError):
    """A dataset file is missing, corrupt or not what was expected."""
