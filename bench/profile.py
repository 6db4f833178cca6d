"""Summarize py-spy collapsed-stack profiles (``run.py --profile DIR`` writes them).

    python bench/profile.py DIR_OR_FILE... [--top 15] [--filter pushpy]

For each profile: the functions with the most samples on top of the stack
(self) and on the stack at all (inclusive), in % of the samples, idle
(``epoll``/``select`` waits) included, so the split between waiting and
working shows.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``func (package/module.py)`` from py-spy's ``func (/long/path/module.py:123)``."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarize(path: Path, top: int, needle: str | None) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [short(f) for f in stack.split(";")]
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    if not total:
        return f"{path.name}: no samples"
    lines = [f"== {path.name}: {total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"  -- {title}")
        shown = 0
        for name, samples in counter.most_common():
            if needle and needle not in name:
                continue
            lines.append(f"  {samples / total * 100:5.1f}%  {name}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--filter", help="only functions whose name or file contains this")
    args = parser.parse_args()
    files = []
    for path in args.paths:
        files += sorted(path.glob("*.txt")) if path.is_dir() else [path]
    for path in files:
        print(summarize(path, args.top, args.filter))


if __name__ == "__main__":
    main()
