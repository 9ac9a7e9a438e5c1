"""JSON Schemas of every event envelope, generated from the declarations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .events import Envelope, event_types

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render() -> dict[str, str]:
    """File name -> schema text, one per event type."""
    out: dict[str, str] = {}
    for event_type, cls in event_types().items():
        schema: dict[str, Any] = Envelope[cls].model_json_schema(mode="serialization")  # type: ignore[valid-type]
        schema["$id"] = f"https://centralino.dev/schemas/{event_type}.json"
        schema["title"] = event_type
        schema["x-event-version"] = cls.version
        schema["properties"]["type"] = {"const": event_type, "type": "string"}
        out[f"{event_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for stale in directory.glob("*.json"):
        if stale.name not in rendered:
            stale.unlink()
    for name, text in rendered.items():
        (directory / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR)
