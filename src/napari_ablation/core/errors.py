"""User-facing errors.

Every problem with user input is raised as :class:`AblationError` whose ``str()`` is a
single line naming the problem. The CLI prints it on stderr and exits non-zero; the
widgets show it as a napari notification. Nothing else should ever reach the user as a
traceback.
"""


class AblationError(Exception):
    """A problem with the user's input or data, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def one_line(exc: BaseException) -> str:
    """One-line description of any exception, for notifications and stderr."""
    if isinstance(exc, AblationError):
        return str(exc)
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
