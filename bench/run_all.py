"""Runs every benchmark (bench/<name>/run.py) in turn; each prints its figures and
the ratio to its anchor measured in the same run.

uv run python bench/run_all.py [name ...]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    wanted = set(sys.argv[1:])
    failed = []
    for script in sorted(BENCH.glob("*/run.py")):
        name = script.parent.name
        if wanted and name not in wanted:
            continue
        print(f"== bench/{name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"   ({time.monotonic() - started:.0f}s, exit {code})\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
