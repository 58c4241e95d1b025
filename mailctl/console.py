"""One console for diagnostics (stderr) and one for data (stdout)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """Data for scripts: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()

