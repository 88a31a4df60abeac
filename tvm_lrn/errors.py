"""Error messages in one line, for command-line output, logs and CSV notes."""

from __future__ import annotations

import re

__all__ = ["first_line"]

_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b")
#: TVM's diagnostics (schedule errors, for one) end with this line, after the IR.
_TVM_MESSAGE = "Error message:"


def first_line(err: BaseException | str, *, limit: int | None = None) -> str:
    """The message of an error (or of error text) in one line.

    Parameters
    ----------
    err : BaseException or str
        The error, or text such as a worker's error message.
    limit : int, optional
        Cut the line to this many characters (CSV notes want short lines).

    Returns
    -------
    str
        The first non-blank line of the message, with these exceptions: text that
        carries a traceback (MetaSchedule's builder and runner errors, a worker's
        output) gives its last ``...Error: ...`` line, or its last line; a TVM
        diagnostic, whose IR listing separates a summary from the ``Error message:``
        line at its end, gives the two joined. An empty message gives the error's
        type name.
    """
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        text = type(err).__name__
    elif len(lines) > 1 and any(ln.startswith("Traceback") for ln in lines):
        errors = [ln for ln in lines if _ERROR_LINE.match(ln)]
        text = errors[-1] if errors else lines[-1]
    elif len(lines) > 1 and lines[-1].startswith(_TVM_MESSAGE):
        text = f"{lines[0]} {lines[-1]}"
    else:
        text = lines[0]
    return text if limit is None else text[:limit]
