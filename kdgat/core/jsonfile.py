"""Reading a JSON file that a stage needs, with the one-line errors users get for every other input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdgat.core.errors import KdgatError


def read_json(path: str | Path, *, missing: str, what: str = "") -> Any:
    """The parsed file; a missing file raises ``<path>: <missing>``, a broken one ``<path>: unreadable <what>: ...``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KdgatError(f"{path}: {missing}") from None
    except (OSError, ValueError) as exc:
        raise KdgatError(f"{path}: unreadable{f' {what}' if what else ''}: {exc}") from None
