"""For maintainers: is the committed registry schema the same as the shared copy it was taken from?

tests/fixtures/registry/server.schema.json is the MCP registry's server.json schema, committed so
that the tests validate server.json against it on every clone. It was copied from a folder outside
this repository (`../shared/registry/server.schema.json` beside a maintainer's checkout), which a
user's clone and CI never have, so this comparison is a script to run by hand, not a test:

    .venv/bin/python .ci/compare_registry_schema.py [PATH_TO_SHARED_SCHEMA]

Exit status 0 when the two are byte for byte the same, 1 when they differ (with a unified diff),
2 when the shared copy is not there.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "tests" / "fixtures" / "registry" / "server.schema.json"
SHARED = ROOT.parent / "shared" / "registry" / "server.schema.json"


def main(argv: Sequence[str]) -> int:
    shared = Path(argv[0]) if argv else SHARED
    if not shared.is_file():
        print(
            f"No shared registry schema at {shared}: pass the path of the copy to compare with.",
            file=sys.stderr,
        )
        return 2
    if shared.read_bytes() == COMMITTED.read_bytes():
        print(f"{COMMITTED.relative_to(ROOT)} is the same as {shared}.")
        return 0
    diff = difflib.unified_diff(
        COMMITTED.read_text().splitlines(keepends=True),
        shared.read_text().splitlines(keepends=True),
        fromfile=str(COMMITTED.relative_to(ROOT)),
        tofile=str(shared),
    )
    sys.stdout.writelines(diff)
    print(f"\nThey differ: copy {shared} over {COMMITTED.relative_to(ROOT)} if the shared one is newer.")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
