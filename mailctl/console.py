"""One console for diagnostics (stderr) and one for data (stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

# Not a terminal (a pipe, a file, CI): no width to fit, so tables take the width of their content
# and never cut an id, address or path. In a terminal, columns that hold them fold instead.
_UNBOUNDED = 10_000


def _console(**options: Any) -> Console:
    console = Console(highlight=False, **options)
    if not console.is_terminal:
        console.width = _UNBOUNDED
    return console


err = _console(stderr=True)
out = _console(soft_wrap=True)


def print_json(value: Any) -> None:
    """Data for scripts: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()



def confirm(question: str, *, no_terminal_hint: str) -> None:
    """Ask on the terminal; anything but yes is Aborted. Without a terminal, refuse rather than guess."""
    from mailctl.errors import Aborted, UserError

    if not sys.stdin.isatty():
        raise UserError(f"refusing to go on without confirmation: standard input is not a terminal ({question})", hint=no_terminal_hint)
    try:
        answer = err.input(Text(f"{question} [y/N] "))  # Text: "[y/N]" is no markup tag
    except EOFError:  # Ctrl-D: no answer is no
        answer = ""
    except KeyboardInterrupt:
        err.print()  # what follows starts on a line of its own, not after the prompt
        raise
    if answer.strip().lower() not in {"y", "yes"}:
        raise Aborted()
