"""Every error hwnas raises on purpose, in one place.

Each is a ``HwnasError``: the CLI prints its message as one line and exits
with status 2. Messages say what was wrong and what was expected.
"""


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` on one line (every run of whitespace, newlines included, one space), cut to ``limit`` characters
    where given: how an error's reason is quoted inside another message."""
    folded = " ".join(str(text).split())
    return folded if limit is None else folded[:limit]


class HwnasError(Exception):
    """Bad input or an unmet precondition; the message is meant for the user."""


class StructureError(HwnasError):
    """A structure string that does not parse or does not describe a valid network."""

    def __init__(self, message: str, text: str | None = None, position: int | None = None):
        self.text = text
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"invalid structure{where}: {message}")


class ProxyError(HwnasError):
    """A zero-shot proxy could not give a finite score (NaN, inf, undefined transform)."""


class ProfileError(HwnasError):
    """A latency profile that is missing, corrupted, or does not fit the request."""


class BackendUnavailable(HwnasError):
    """A latency backend or device that is not present on this machine."""


class BudgetError(HwnasError):
    """A search budget that no network of the space can meet, or that contradicts the profile."""


class DeployError(HwnasError):
    """An export or a deployed artifact that failed its checks."""
