"""User-facing errors.

Every problem with user input is raised as :class:`AblationError` whose ``str()`` is a
single line naming the problem. The CLI prints it on stderr and exits non-zero; the
widgets show it as a napari notification. Nothing else should ever reach the user as a
traceback.
"""


class AblationError(Exception):
    """A problem with the user's input or data, described in one line.

    Raised by every core function for bad input (a missing file, a 2D image, an
    empty mask, grids that do not overlap, ...). Its ``str()`` is the message with
    all whitespace runs collapsed to single spaces, so that it always fits on one
    line of stderr or in one notification.

    Parameters
    ----------
    message : str
        What is wrong, as one sentence naming the problem.

    Examples
    --------
    >>> str(AblationError("the tumor   mask  is empty"))
    'the tumor mask is empty'
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class NothingToDo(AblationError):
    """A valid request that would change nothing, told as information rather than an error.

    E.g. interpolating a structure whose every slice is already drawn. The CLI treats it
    as any :class:`AblationError`; the widgets show it as an information notification.

    Parameters
    ----------
    message : str
        What there is nothing to do about, as one sentence.

    Examples
    --------
    >>> isinstance(NothingToDo("nothing to interpolate"), AblationError)
    True
    """


def one_line(exc: BaseException) -> str:
    """Describe any exception in one line, for notifications and stderr.

    Parameters
    ----------
    exc : BaseException
        The exception to describe.

    Returns
    -------
    str
        The message of an :class:`AblationError` as it is; for any other exception
        its type name followed by its message on one line (or the type name alone
        when the message is empty).

    Examples
    --------
    >>> one_line(ValueError("bad   value"))
    'ValueError: bad value'
    >>> one_line(AblationError("the tumor mask is empty"))
    'the tumor mask is empty'
    """
    if isinstance(exc, AblationError):
        return str(exc)
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
