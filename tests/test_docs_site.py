"""The docs: the MkDocs site builds in strict mode (every page of the nav exists, no broken link or anchor,
no page left out of the nav), offline (no web fonts, no CDN), and every relative link of README.md points
at a file of the repository."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HAVE_MKDOCS = all(importlib.util.find_spec(name) for name in ("mkdocs", "material"))
needs_mkdocs = pytest.mark.skipif(
    not HAVE_MKDOCS, reason="mkdocs and mkdocs-material are not installed (the `docs` extra)"
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`]*`")
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def relative_links(markdown: str) -> Iterator[tuple[int, str]]:
    """``(line number, target)`` of every relative link and image in ``markdown``, outside code; the
    ``#fragment`` and ``?query`` are dropped, links to an anchor of the same page are skipped."""
    in_fence = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        text = _CODE_SPAN.sub("", line)
        for match in [*_MD_LINK.finditer(text), *_HTML_LINK.finditer(text)]:
            target = match.group(1)
            if _SCHEME.match(target) or target.startswith(("#", "/")):
                continue
            path = re.split(r"[#?]", target, maxsplit=1)[0]
            if path:
                yield number, path


def broken_links(markdown_file: Path) -> list[str]:
    """The relative links of ``markdown_file`` whose target does not exist, as ``file:line: target``."""
    return [
        f"{markdown_file.name}:{number}: {target}"
        for number, target in relative_links(markdown_file.read_text(encoding="utf-8"))
        if not (markdown_file.parent / target).exists()
    ]


def test_relative_links_finds_links_and_images_outside_code(tmp_path):
    page = tmp_path / "README.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# there\n")
    page.write_text(
        "# t\n"
        "[ok](docs/there.md#a-section) and [gone](docs/missing.md) ![pic](docs/missing.png)\n"
        '<img src="docs/also-missing.png"> [web](https://example.org/x.md) [anchor](#t)\n'
        "`[in code](docs/code.md)`\n"
        "```\n[in a fence](docs/fenced.md)\n```\n",
        encoding="utf-8",
    )
    assert [target for _, target in relative_links(page.read_text())] == [
        "docs/there.md",
        "docs/missing.md",
        "docs/missing.png",
        "docs/also-missing.png",
    ]
    assert broken_links(page) == [
        "README.md:2: docs/missing.md",
        "README.md:2: docs/missing.png",
        "README.md:3: docs/also-missing.png",
    ]


def test_every_relative_link_of_the_readme_points_at_a_file():
    readme = REPO / "README.md"
    assert list(relative_links(readme.read_text(encoding="utf-8"))), "the README links no page: parsing broke"
    assert broken_links(readme) == []


def test_the_readme_keeps_the_two_set_up_commands():
    # .ci/run calls `make test`: the README is where a newcomer reads that it is the test command
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make demo\b", text, re.MULTILINE) and re.search(r"^make test\b", text, re.MULTILINE)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def _nav_pages(nav: list) -> Iterator[str]:
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _nav_pages(value)
        else:
            yield value


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    command += ["--site-dir", str(site)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=config.parent)


@pytest.mark.slow
@needs_mkdocs
def test_the_docs_site_builds_in_strict_mode_and_offline(tmp_path):
    site = tmp_path / "site"
    result = _mkdocs_build(REPO / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["font"] is False  # no Google Fonts fetched by the browser
    pages = list(_nav_pages(config["nav"]))
    assert "index.md" in pages and len(pages) >= 20
    for page in pages:
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), f"{page} was not built"
    assert (site / "web-page.png").is_file() and (site / "demo-pareto.png").is_file()
    external = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.IGNORECASE)
    for html in site.rglob("*.html"):
        assert not external.search(html.read_text(encoding="utf-8")), f"{html}: an asset from another site"


@pytest.mark.slow
@needs_mkdocs
def test_a_broken_link_fails_the_strict_build(tmp_path):
    # the same config on a copy of the docs with one link to a missing anchor: strict mode must refuse it
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    home = tmp_path / "docs" / "index.md"
    home.write_text(home.read_text(encoding="utf-8") + "\n[gone](guides/training.md#no-such-section)\n", "utf-8")
    result = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stdout + result.stderr
