"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class CldstError(Exception):
    """Base class of errors caused by user input (config values, files, names)."""


class ConfigError(CldstError, ValueError):
    """A configuration field has a value that is not allowed."""


class DataError(CldstError):
    """A dataset file is missing, corrupt or not what was expected."""


class Interrupted(Exception):
    """A signal (SIGINT, SIGTERM) stopped the work; str() is the one line to show, signum the signal.
    Here, not in cldst.sweep (which raises it), so the CLI can catch it without importing torch."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (a notebook's interrupt button) during a run. Still a KeyboardInterrupt for any caller that
    catches one; in a notebook it shows as its one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:  # what IPython shows in place of the traceback
        return [f"{type(self).__name__}: {self}"]


def check_choice(field: str, value: object, allowed) -> None:
    """ConfigError "field='value' is not one of: a, b, c" unless `value` is in `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not one of: {', '.join(map(str, allowed))}")


def check_positive_int(field: str, value: object) -> None:
    """ConfigError unless `value` is an int >= 1 (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}={value!r} must be an integer >= 1")


def one_line(exc: BaseException) -> str:
    """An exception as one line: "Type: last line of its message" (papermill's cell errors by name)."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)  # PapermillExecutionError
    if ename:
        return f"{ename}: {evalue}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
