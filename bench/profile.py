"""Sampling a gateway with py-spy during a load phase, and the top costs of the samples.

py-spy is a development tool, not a dependency: install it with
``uv pip install --python .venv/bin/python py-spy``. ``--profile`` on ``bench.run`` (and
``python -m bench.profile RAWFILE`` on a saved sample file) use it. Raw samples are
"frame;frame;...;leaf count" lines; the summary folds line numbers away and ranks
functions by self time (the leaf) and by inclusive time (anywhere on the stack).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` of one process for a fixed time, in raw (collapsed) format."""

    def __init__(self, pid: int, seconds: float, rate: int = 250) -> None:
        # Kept after the run (the stack's folders are not) for ``python -m bench.profile``.
        handle, name = tempfile.mkstemp(prefix="chat-gateway-", suffix=".pyspy.txt")
        os.close(handle)
        self.output = Path(name)
        self.process: subprocess.Popen[bytes] | None = None
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (see bench/profile.py)")
        self.command = [
            binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
            "--rate", str(rate), "--format", "raw", "--output", str(self.output), "--nonblocking",
        ]  # fmt: skip

    def start(self) -> Profiler:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def wait(self, timeout: float = 60.0) -> dict[str, Any] | None:
        if self.process is None:
            return None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.output.exists() or not self.output.stat().st_size:
            return None
        return {"raw": str(self.output), **summarize(self.output)}


def _fold(frame: str) -> str:
    """``handle (chat_gateway/connection.py:120)`` -> ``handle (chat_gateway/connection.py)``,
    with site-packages and the repository prefix cut off."""
    frame = _LINE.sub(")", frame.strip())
    for marker in ("site-packages/", "/services/chat-gateway/", "/shared/", "/lib/python3.11/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            frame = head + "(" + tail.split(marker, 1)[-1]
    return frame


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_fold(f) for f in stack.split(";") if f.strip()]
        # py-spy puts the thread name first; idle samples end in the event loop's poll.
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def ranked(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "self_pct": ranked(own), "inclusive_pct": ranked(inclusive)}


def callers(raw: Path, leaf: str, depth: int = 6, top: int = 15) -> list[tuple[str, int]]:
    """The stacks (their last ``depth`` frames) of samples whose leaf contains ``leaf``."""
    found: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_fold(f) for f in stack.split(";") if f.strip()]
        if frames and count_text.isdigit() and leaf in frames[-1]:
            found[" <- ".join(reversed(frames[-depth:]))] += int(count_text)
    return found.most_common(top)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) not in (1, 2):
        print("usage: python -m bench.profile RAWFILE [LEAF]", file=sys.stderr)
        return 2
    if len(args) == 2:
        for stack, count in callers(Path(args[0]), args[1]):
            print(f"{count:6d}  {stack}")
        return 0
    summary = summarize(Path(args[0]), top=25)
    print(f"{summary['samples']} samples")
    for title in ("self_pct", "inclusive_pct"):
        print(f"\n{title}")
        for name, pct in summary[title]:
            print(f"  {pct:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
