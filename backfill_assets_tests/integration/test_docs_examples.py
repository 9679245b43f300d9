"""The documentation a user pastes from: README.md and docs/*.md.

Every ```sh block runs with `bash -euo pipefail`, the blocks of one page in page order, in a
temporary directory of its own, with the repository's `.venv/bin` first on PATH (CI creates it with
`bash scripts/setup.sh`) and `BACKFILL_WAREHOUSE` and `DAGSTER_HOME` in temporary folders. A ```text
block right after a ```sh block is that block's output: each of its lines must appear in what the
block printed (stdout and stderr), where `…` stands for anything and runs of spaces count as one.
Blocks with another info string (bash, text, python, yaml) are not run. Relative links must point
at files that exist (and `#anchors` at headings), and the README stays short.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = ROOT / ".venv" / "bin"
README_MAX_LINES = 150
TEST_COMMAND = "bash scripts/test.sh"
PAGE_TIMEOUT_S = 600

_FENCE = re.compile(r"^```([^`\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+).*?\1", re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page: info string, body, the line it starts on, the output shown after it."""

    info: str
    body: str
    line: int
    output: str | None = None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    fences = list(_FENCE.finditer(text))
    found = []
    for i, fence in enumerate(fences):
        info = fence.group(1).strip()
        output = None
        following = fences[i + 1] if i + 1 < len(fences) else None
        if following is not None and following.group(1).strip() == "text":
            if not text[fence.end() : following.start()].strip():
                output = following.group(2)
        found.append(Block(info, fence.group(2), text.count("\n", 0, fence.start()) + 1, output))
    return found


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.info == "sh"]


def _prose(text: str) -> str:
    """The text without fenced blocks and inline code, where a `[x](y)` is not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return out


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ------------------------------------------------------------------------------------------ cheap checks


def test_readme_is_short_and_shows_the_test_command() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert TEST_COMMAND in (line.strip() for line in lines), f"README.md must show the line `{TEST_COMMAND}`"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in (line.strip() for line in ci), ".ci/run no longer runs the README's test command"


def test_the_pages_have_pasteable_examples() -> None:
    """The mechanism is not vacuous: the README's examples are marked to be run."""
    assert shell_blocks(ROOT / "README.md"), "README.md has no ```sh block"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{_rel(page)}: broken links: {', '.join(broken)}"


def test_output_lines_are_matched_with_ellipses_and_loose_spaces() -> None:
    shown = "run …: partitions 2025-01...…\ncase III records read  5  applied 5\n"
    printed = "noise\nrun 2e5f: partitions 2025-01...2026-12\ncase III records read        5  applied        5\n"
    assert missing_lines(shown, printed) == []
    assert missing_lines("checks: 11 passed", printed) == ["checks: 11 passed"]


# ------------------------------------------------------------------------------------------ the examples


def _pattern(line: str) -> re.Pattern[str]:
    parts = [r"\s+".join(re.escape(word) for word in part.split()) for part in line.split("…")]
    return re.compile(".*".join(parts))


def _normal(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def missing_lines(shown: str, printed: str) -> list[str]:
    """The lines of the shown output that appear in no printed line."""
    got = _normal(printed)
    wanted = [line for line in _normal(shown) if line]
    return [line for line in wanted if not any(_pattern(line).search(g) for g in got)]


def _environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_") and k != "SPARK_TESTING"}
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")  # as scripts/demo.sh does
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        BACKFILL_WAREHOUSE=str(tmp / "warehouse"),
        DAGSTER_HOME=str(home),
    )
    return env


@pytest.mark.parametrize("page", [p for p in PAGES if shell_blocks(p)], ids=_rel)
def test_the_shell_examples_run(page: Path, tmp_path: Path) -> None:
    if not (VENV_BIN / "backfill-assets").exists():
        message = f"{VENV_BIN}/backfill-assets is missing: run `bash scripts/setup.sh` first"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path / "work"
    work.mkdir()
    env = _environment(tmp_path)
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    for block in shell_blocks(page):
        where = f"{_rel(page)}:{block.line}"
        try:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.body],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where}: the block did not finish within {PAGE_TIMEOUT_S} s for the page:\n{block.body}")
        printed = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"{where}: exit status {done.returncode}\n{block.body}\n--- output (last 3000 characters):\n"
            f"{printed[-3000:]}"
        )
        if block.output is not None:
            missing = missing_lines(block.output, printed)
            assert not missing, f"{where}: shown output not printed: {missing}\n--- output:\n{printed[-3000:]}"
