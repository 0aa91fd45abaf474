"""Errors as one line: how the ``relpos`` command line reports any failure.

The library raises exceptions whose message names the file, field or value at fault
(``ValueError``, ``FileNotFoundError``, ``OSError`` and their subclasses, pydantic's
``ValidationError`` for configs). :func:`one_line` turns any of them, or a foreign exception
that escaped, into the single line the CLI prints after ``relpos: error:``; the traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["INTERRUPTED", "one_line"]

INTERRUPTED = "interrupted; rerun the same command to continue"
"""What the CLI prints on Ctrl-C (exit status 130): every long command resumes."""


def _loc(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted field path (list indices in brackets)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")):
            continue  # validator wrappers, not fields
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _validation(exc: Any) -> str:
    """``field.path: message (got value)`` for the first error, and how many more there are."""
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc).splitlines()[0]
    # a union field reports one error per branch: the validator's own message says most
    first = next((e for e in errors if e.get("type") == "value_error"), errors[0])
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    text = f"{_loc(tuple(first.get('loc', ())))}: {msg}"
    if "input" in first and first.get("type") not in ("missing", "value_error"):
        value = first["input"]
        shown = repr(value) if not isinstance(value, (dict, list)) else json.dumps(value)[:60]
        text += f" (got {shown})"
    if len(errors) > 1:
        text += f"; and {len(errors) - 1} more error(s) in {exc.title}"
    return text


def one_line(exc: BaseException) -> str:
    """The one-line message for ``exc``: its text with newlines folded into ``; ``, the file an
    ``OSError`` names added when the text lacks it, the field path of a config error, and the
    exception type when the text alone would be empty or cryptic."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        text = _validation(exc)
    elif isinstance(exc, json.JSONDecodeError):
        text = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    else:
        text = str(exc)
        if isinstance(exc, KeyError) and exc.args:
            text = f"missing key {exc.args[0]!r}"
        if isinstance(exc, OSError) and exc.strerror and exc.filename:  # "[Errno 28] ...: 'f'"
            text = f"{exc.strerror} ({exc.filename})"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    text = "; ".join(lines)
    if not text or not isinstance(exc, (ValueError, OSError, LookupError)):
        kind = type(exc).__name__
        text = f"{kind}: {text}" if text else kind
    return text
