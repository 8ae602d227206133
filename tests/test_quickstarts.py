"""The quick starts (``docs/quickstart/*.md``) run as written.

Every fenced ```` ```sh ```` block of a page is run by bash (``set -euo pipefail``), in page order, with the
venv's ``bin`` first on ``PATH``, in a fresh folder per page: ``<tmp>/work``, which the page's blocks share
(files, not shell variables or ``cd``). One test per block, so ``-ra`` lists every skipped block with its
reason; a block first runs the page's earlier blocks that have not run yet.

An HTML comment on the line before a block (blank lines between allowed) tells the test how to run it; it
is invisible on the rendered page::

    <!-- test: needs-shared slow -->
    <!-- test: skip "needs a Raspberry Pi" -->
    <!-- test: background wait=http://127.0.0.1:8080/healthz -->

``needs-shared``
    the block reads ``../shared`` (the real datasets and the published UltraFace model, standing in for the
    reader's own download or data). Only then is ``<tmp>/shared`` a link to it, so ``../shared`` resolves from
    ``<tmp>/work``; when it is missing (a fresh clone), the block and the rest of its page are skipped.
``skip "REASON"``
    never run here (a real Pi, a camera, ``sudo`` on a device, the reader's own broker); skipped with REASON.
``background wait=URL``
    a long-running process (the camera daemon, a broker) that the reader starts in a terminal of its own and
    stops with Ctrl-C. It is started in its own process group; the next block runs once ``wait`` answers:
    ``http://...`` with a 2xx, or ``tcp:HOST:PORT`` accepting connections (when something listens on that port
    before the block starts, the rest of the page is skipped: it would talk to the wrong server). It is stopped
    (SIGTERM; the daemon treats it as Ctrl-C) after the page's last block; exiting before that fails the next
    block.
``retry=SECONDS``
    run the block again (a second apart) until it succeeds, for at most SECONDS: for a block that waits for a
    daemon's first frames or events.
``needs-command=NAME``
    skip the block when NAME is not on ``PATH`` (``mosquitto``, ``mosquitto_sub``); the page goes on.
``timeout=SECONDS``
    the block's time limit (default 300 s); for a background block, how long ``wait`` may take (default 90 s).
``slow``
    the page trains or converts: all its block tests are marked ``slow``.
``daemon-config [base=FILE]`` (on a ```` ```yaml ```` block, not run)
    the block is a camera daemon config, or the keys a reader sets in FILE (relative to the repository, e.g.
    the installed ``deploy/config-rpi.yaml``); it must validate (``load_config``).

A shell-like block fenced as anything but ``sh`` (``bash``, ``shell``, ``console``) would be silently ignored
here, so it fails the page's checks, as do an unknown annotation, an annotation on no block and a page
without any ``sh`` block.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED

QUICKSTART = REPO / "docs" / "quickstart"
PAGES = sorted(QUICKSTART.glob("*.md"))
VENV_BIN = Path(sys.executable).parent  # not resolved: a venv's python is a link to the system's
SHELL_LANGUAGES = {"bash", "shell", "console", "zsh", "shell-session", "sh-session", "terminal"}
BLOCK_TIMEOUT_S = 300.0
WAIT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
_INSTALL_HINTS = {
    "mosquitto": "apt-get install mosquitto; .ci/run installs it",
    "mosquitto_sub": "apt-get install mosquitto-clients",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_ANNOTATION = re.compile(r"^\s*<!--\s*test:(?P<body>.*?)-->\s*$")
_FLAGS = {"needs-shared", "background", "slow", "daemon-config"}
_KEYS = {"wait", "retry", "timeout", "needs-command", "base"}
_SH_ONLY = {"needs-shared", "background", "slow", "skip", "wait", "retry", "timeout", "needs-command"}


@dataclass(frozen=True)
class Tags:
    """A parsed ``<!-- test: ... -->`` annotation."""

    flags: frozenset[str] = frozenset()
    values: dict[str, str] = field(default_factory=dict)
    skip: str | None = None

    def __contains__(self, flag: str) -> bool:
        return flag in self.flags

    def names(self) -> set[str]:
        return set(self.flags) | set(self.values) | ({"skip"} if self.skip is not None else set())


def parse_annotation(body: str) -> Tags:
    """The tags of an annotation's text (after ``test:``); ``ValueError`` names an unknown or malformed one."""
    tokens = shlex.split(body)
    flags: set[str] = set()
    values: dict[str, str] = {}
    skip = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "skip":
            if i + 1 >= len(tokens) or not tokens[i + 1].strip():
                raise ValueError('skip needs a reason: skip "why it cannot run here"')
            skip = tokens[i + 1]
            i += 2
            continue
        key, eq, value = token.partition("=")
        if eq:
            if key not in _KEYS or not value:
                raise ValueError(f"unknown or empty key {token!r}; expected one of {sorted(_KEYS)}=VALUE")
            values[key] = value
        elif token in _FLAGS:
            flags.add(token)
        else:
            raise ValueError(f'unknown annotation {token!r}; expected {sorted(_FLAGS)}, skip "REASON" or KEY=VALUE')
        i += 1
    for key in ("retry", "timeout"):
        if key in values:
            try:
                if float(values[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{key}={values[key]!r}: expected a number of seconds > 0") from None
    if "background" in flags and "wait" not in values:
        raise ValueError("background needs wait=http://HOST:PORT/PATH or wait=tcp:HOST:PORT")
    if "wait" in values and "background" not in flags:
        raise ValueError("wait= only goes with background")
    if "wait" in values and not re.match(r"^(https?://\S+|tcp:[^:\s]+:\d+)$", values["wait"]):
        raise ValueError(f"wait={values['wait']!r}: expected http://... or tcp:HOST:PORT")
    if "base" in values and "daemon-config" not in flags:
        raise ValueError("base= only goes with daemon-config")
    return Tags(frozenset(flags), values, skip)


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: ``language`` the fence's first word, ``line`` its opening line (1-based)."""

    page: Path
    line: int
    language: str
    code: str
    tags: Tags
    annotation_error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.page.name}:{self.line}"


@dataclass(frozen=True)
class PageParse:
    blocks: list[Block]
    problems: list[str]  # annotations on no block, bad annotations


def parse_page(text: str, page: Path = Path("page.md")) -> PageParse:
    """Every fenced block of ``text`` with the annotation right before it (blank lines between allowed)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, str] | None = None  # (line, body) of an annotation waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        annotation = _ANNOTATION.match(line)
        fence = _FENCE.match(line)
        if annotation:
            if pending:
                problems.append(f"{page.name}:{pending[0]}: annotation on no block (another annotation follows)")
            pending = (i + 1, annotation.group("body"))
        elif fence:
            indent, marker = fence.group("indent"), fence.group("fence")
            language = (fence.group("info").split() or [""])[0].lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines):
                close = lines[j].strip()
                if close.startswith(marker[0] * len(marker)) and not close.strip(marker[0]):
                    break
                body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            tags, error = Tags(), None
            if pending:
                try:
                    tags = parse_annotation(pending[1])
                except ValueError as exc:
                    error = f"{page.name}:{pending[0]}: {exc}"
                    problems.append(error)
                pending = None
            blocks.append(Block(page, i + 1, language, "\n".join(body) + "\n", tags, error))
            i = j + 1
            continue
        elif line.strip() and pending:
            problems.append(f"{page.name}:{pending[0]}: annotation on no block (text follows it)")
            pending = None
        i += 1
    if pending:
        problems.append(f"{page.name}:{pending[0]}: annotation on no block (end of page)")
    return PageParse(blocks, problems)


def page_problems(page: Path) -> list[str]:
    """What would make the page's test silently ignore a block, or run nothing."""
    parsed = parse_page(page.read_text(encoding="utf-8"), page)
    problems = list(parsed.problems)
    shell = [b for b in parsed.blocks if b.language == "sh"]
    if not shell:
        problems.append(f"{page.name}: no ```sh block: nothing of this page would be tested")
    for block in parsed.blocks:
        if block.language in SHELL_LANGUAGES:
            problems.append(f"{block.name}: a ```{block.language} block is not run by the tests; fence it as ```sh")
        if block.language != "sh" and block.tags.names() & _SH_ONLY:
            problems.append(f"{block.name}: {sorted(block.tags.names() & _SH_ONLY)} only apply to ```sh blocks")
        if "daemon-config" in block.tags and block.language != "yaml":
            problems.append(f"{block.name}: daemon-config only applies to ```yaml blocks")
        if block.language == "sh" and not block.code.strip():
            problems.append(f"{block.name}: empty ```sh block")
    return problems


def shell_blocks(page: Path) -> list[Block]:
    return [b for b in parse_page(page.read_text(encoding="utf-8"), page).blocks if b.language == "sh"]


# --- running a page ------------------------------------------------------------------------------------------


class BlockFailed(Exception):
    pass


@dataclass
class Outcome:
    ran: bool
    reason: str = ""  # why it was skipped


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")
    return text if len(text) <= limit else "..." + text[-limit:]


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _wait_target(wait: str) -> tuple[str, int]:
    if wait.startswith("tcp:"):
        _, host, port = wait.split(":")
        return host, int(port)
    url = urllib.parse.urlsplit(wait)
    return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)


def _ready(wait: str) -> bool:
    if wait.startswith("tcp:"):
        return _port_taken(*_wait_target(wait))
    try:
        with urllib.request.urlopen(wait, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class PageRun:
    """One page's blocks, run in order in ``<root>/work``; background processes stopped by :meth:`close`."""

    def __init__(self, page: Path, root: Path) -> None:
        self.page = page
        self.blocks = shell_blocks(page)
        self.root = root
        self.work = root / "work"
        self.logs = root / "logs"
        self.work.mkdir(parents=True)
        self.logs.mkdir()
        self.outcomes: list[Outcome] = []
        self.stopped: str | None = None  # why the rest of the page does not run
        self.background: list[tuple[Block, subprocess.Popen, Path]] = []
        self.env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1", MPLBACKEND="Agg")

    # ../shared appears only while a block that declares it runs (and while its background process lives)
    def _link_shared(self, on: bool) -> None:
        link = self.root / "shared"
        if on and not link.is_symlink():
            link.symlink_to(SHARED.resolve(), target_is_directory=True)
        elif not on and link.is_symlink() and not any("needs-shared" in b.tags for b, _, _ in self.background):
            link.unlink()

    def run_through(self, index: int) -> Outcome:
        while len(self.outcomes) <= index:
            block = self.blocks[len(self.outcomes)]
            if self.stopped:
                self.outcomes.append(Outcome(False, block.tags.skip or self.stopped))
                continue
            try:
                outcome = self._run(block, len(self.outcomes))
            except BlockFailed as exc:
                self.stopped = f"an earlier block of {self.page.name} failed ({block.name})"
                self.outcomes.append(Outcome(False, self.stopped))
                if len(self.outcomes) - 1 == index:
                    raise AssertionError(str(exc)) from None
                raise AssertionError(f"{block.name}, run before this block, failed:\n{exc}") from None
            self.outcomes.append(outcome)
        return self.outcomes[index]

    def _check_background(self) -> None:
        for block, proc, log in self.background:
            if proc.poll() is not None:
                raise BlockFailed(
                    f"the background block {block.name} exited ({proc.returncode}) before the page ended:\n"
                    f"{block.code}\n--- its output ---\n{_tail(log)}"
                )

    def _run(self, block: Block, number: int) -> Outcome:
        tags = block.tags
        if tags.skip is not None:
            return Outcome(False, tags.skip)
        command = tags.values.get("needs-command")
        if command and not shutil.which(command, path=self.env["PATH"]):
            return Outcome(False, f"{command} is not on PATH ({_INSTALL_HINTS.get(command, 'not installed')})")
        if "needs-shared" in tags and not SHARED.is_dir():
            missing = f"{SHARED} (../shared beside the checkout), which is not here"
            self.stopped = f"the rest of the page is skipped: {block.name} needs {missing}"
            return Outcome(False, f"needs {missing}")
        self._check_background()
        script = "set -euo pipefail\n" + block.code
        log = self.logs / f"block-{number:02d}-line-{block.line}.log"
        self._link_shared("needs-shared" in tags)
        try:
            if "background" in tags:
                return self._start_background(block, script, log)
            deadline = time.monotonic() + float(tags.values.get("retry", 0))
            while True:
                rc = self._run_once(block, script, log)
                if rc == 0:
                    return Outcome(True)
                if time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
                self._check_background()
        finally:
            self._link_shared(False)
        raise BlockFailed(
            f"{block.name} exited with status {rc} (run in {self.work}):\n{block.code}\n--- output ---\n{_tail(log)}"
        )

    def _run_once(self, block: Block, script: str, log: Path) -> int:
        timeout = float(block.tags.values.get("timeout", BLOCK_TIMEOUT_S))
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._stop(proc, signal.SIGKILL)
                raise BlockFailed(
                    f"{block.name} ran past its {timeout:.0f} s limit:\n{block.code}\n--- output ---\n{_tail(log)}"
                ) from None

    def _start_background(self, block: Block, script: str, log: Path) -> Outcome:
        wait = block.tags.values["wait"]
        host, port = _wait_target(wait)
        if _port_taken(host, port):
            self.stopped = f"{host}:{port} is taken by another process; {block.name} needs it"
            return Outcome(False, self.stopped)
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((block, proc, log))
        deadline = time.monotonic() + float(block.tags.values.get("timeout", WAIT_TIMEOUT_S))
        while not _ready(wait):
            if proc.poll() is not None:
                raise BlockFailed(
                    f"{block.name} exited ({proc.returncode}) before {wait} answered:\n{block.code}\n"
                    f"--- output ---\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise BlockFailed(f"{block.name}: {wait} did not answer within the limit\n--- output ---\n{_tail(log)}")
            time.sleep(0.3)
        return Outcome(True)

    @staticmethod
    def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(proc.pid, sig)  # its own session: the bash and everything it started
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop the background processes (SIGTERM, as Ctrl-C in their terminal would; then SIGKILL)."""
        while self.background:
            _, proc, _ = self.background.pop()
            self._stop(proc)
        self._link_shared(False)


def _block_params() -> Iterator[object]:
    for page in PAGES:
        blocks = shell_blocks(page)
        marks = [pytest.mark.slow] if any("slow" in b.tags for b in blocks) else []
        for index, block in enumerate(blocks):
            yield pytest.param(page, index, id=f"{page.stem}-{index + 1:02d}-line{block.line}", marks=marks)


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory) -> Iterator[dict[Path, PageRun]]:
    runs: dict[Path, PageRun] = {}
    yield runs
    for run in runs.values():
        run.close()


@pytest.mark.parametrize(("page", "index"), list(_block_params()))
def test_quickstart_block(page: Path, index: int, page_runs: dict[Path, PageRun], tmp_path_factory) -> None:
    if page not in page_runs:
        page_runs[page] = PageRun(page, tmp_path_factory.mktemp(page.stem))
    run = page_runs[page]
    try:
        outcome = run.run_through(index)
    finally:
        if index == len(run.blocks) - 1 or run.stopped:
            run.close()
    if not outcome.ran:
        pytest.skip(f"{run.blocks[index].name}: {outcome.reason}")


# --- the pages' own checks (fast) ----------------------------------------------------------------------------


def test_there_are_quick_starts():
    names = {page.name for page in PAGES}
    assert {
        "pi-face-camera.md",
        "train-your-data.md",
        "choose-a-model.md",
        "cameras-zones-alerts.md",
        "check-int8.md",
    } <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_block_of_the_page_is_run_or_skipped_with_a_reason(page: Path):
    assert page_problems(page) == []
    blocks = shell_blocks(page)
    assert blocks, f"{page.name}: the extractor found no ```sh block"
    for block in blocks:
        # what the runner does with it: run it (perhaps in the background, perhaps retried), or skip it saying why
        assert block.annotation_error is None
        assert block.tags.skip is None or block.tags.skip.strip(), block.name
    assert any(b.tags.skip is None for b in blocks), f"{page.name}: every block is skipped: nothing is tested"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_daemon_configs_of_the_page_validate(page: Path, tmp_path):
    from edgedet.edge.camera.config import load_config

    for block in parse_page(page.read_text(encoding="utf-8"), page).blocks:
        if "daemon-config" not in block.tags:
            continue
        config = yaml.safe_load(block.code)
        assert isinstance(config, dict), f"{block.name}: not a mapping"
        if "base" in block.tags.values:
            base = yaml.safe_load((REPO / block.tags.values["base"]).read_text(encoding="utf-8"))
            config = {**base, **config}
        http = config.get("http")
        if isinstance(http, dict) and "token_file" in http:  # /etc/edgedet/token is the device's
            token = tmp_path / "token"
            token.write_text("a-token-for-the-test\n")
            config["http"] = {**http, "token_file": str(token)}
        path = tmp_path / "camera.yaml"
        path.write_text(yaml.safe_dump(config))
        try:
            load_config(path)
        except Exception as exc:  # the loader's one-line errors name the key
            pytest.fail(f"{block.name}: the config does not validate: {exc}")


def test_the_extractor_finds_blocks_and_annotations(tmp_path):
    page = tmp_path / "page.md"
    text = (
        "# A page\n\n"
        "<!-- test: needs-shared slow -->\n"
        "```sh\nedgedet import-ultraface ../shared/x.pth --out face.pt\n```\n\n"
        "Some text.\n\n"
        '<!-- test: skip "needs a Raspberry Pi" -->\n\n'
        "```sh\nsudo deploy/install-rpi.sh\n```\n"
        "<!-- test: background wait=http://127.0.0.1:8080/healthz -->\n"
        "~~~sh\nedgedet camera --config c.yaml\n~~~\n"
        "1. In a list:\n\n"
        "    <!-- test: retry=30 needs-command=mosquitto_sub -->\n"
        "    ```sh\n    curl -fsS http://127.0.0.1:8080/events\n    echo done\n    ```\n"
        "```yaml\nmodel: m.onnx\n```\n"
        "````markdown\n```sh\nnot a block of its own\n```\n````\n"
    )
    page.write_text(text)
    parsed = parse_page(text, page)
    assert parsed.problems == []
    assert [(b.language, b.line) for b in parsed.blocks] == [
        ("sh", 4),
        ("sh", 12),
        ("sh", 16),
        ("sh", 22),
        ("yaml", 26),
        ("markdown", 29),
    ]
    first, pi, daemon, listed = shell_blocks(page)
    assert first.tags.flags == {"needs-shared", "slow"}
    assert first.code == "edgedet import-ultraface ../shared/x.pth --out face.pt\n"
    assert pi.tags.skip == "needs a Raspberry Pi"
    assert "background" in daemon.tags and daemon.tags.values["wait"] == "http://127.0.0.1:8080/healthz"
    assert listed.tags.values == {"retry": "30", "needs-command": "mosquitto_sub"}
    assert listed.code == "curl -fsS http://127.0.0.1:8080/events\necho done\n"
    assert page_problems(page) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# no blocks here\n", "no ```sh block"),
        ("```yaml\na: 1\n```\n", "no ```sh block"),
        ("```sh\nls\n```\n```bash\nls\n```\n", "```bash block is not run"),
        ("```sh\nls\n```\n```console\n$ ls\n```\n", "```console block is not run"),
        ("<!-- test: needs-shard -->\n```sh\nls\n```\n", "unknown annotation 'needs-shard'"),
        ("<!-- test: skip -->\n```sh\nls\n```\n", "skip needs a reason"),
        ("<!-- test: background -->\n```sh\nsleep 9\n```\n", "background needs wait="),
        ("<!-- test: retry=soon -->\n```sh\nls\n```\n", "retry='soon'"),
        ("<!-- test: slow -->\nText.\n```sh\nls\n```\n", "annotation on no block (text follows it)"),
        ("```sh\nls\n```\n<!-- test: slow -->\n", "annotation on no block (end of page)"),
        ("```sh\nls\n```\n<!-- test: slow -->\n```yaml\na: 1\n```\n", "only apply to ```sh blocks"),
        ("```sh\n\n```\n", "empty ```sh block"),
    ],
)
def test_a_page_that_would_hide_a_block_fails(tmp_path, text, problem):
    page = tmp_path / "page.md"
    page.write_text(text)
    problems = page_problems(page)
    assert any(problem in p for p in problems), problems


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_page_runs_in_order_in_its_folder_with_background_and_skips(tmp_path):
    port = _free_port()
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\necho hello > a.txt\ntest ! -e ../shared  # only for blocks that declare it\n```\n"
        "<!-- test: needs-shared -->\n```sh\ntest -d ../shared\n```\n"
        f"<!-- test: background wait=http://127.0.0.1:{port}/a.txt -->\n"
        f"```sh\npython -m http.server {port} --bind 127.0.0.1\n```\n"
        "<!-- test: retry=5 -->\n```sh\n"
        f"python -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/a.txt').read())\""
        " | grep -q hello\n```\n"
        '<!-- test: skip "needs a Raspberry Pi" -->\n```sh\nsudo reboot\n```\n'
        "<!-- test: needs-command=no-such-command-here -->\n```sh\nno-such-command-here\n```\n"
        "```sh\necho to stdout; echo to stderr >&2; false\n```\n"
        "```sh\necho never\n```\n"
    )
    assert page_problems(page) == []
    run = PageRun(page, tmp_path / "run")
    try:
        assert run.run_through(0).ran and (run.work / "a.txt").read_text() == "hello\n"
        shared = run.run_through(1)
        assert shared.ran == SHARED.is_dir()
        if not shared.ran:
            return  # the rest of the page is skipped without ../shared
        assert not (run.root / "shared").exists()  # the link went with its block
        assert run.run_through(2).ran and len(run.background) == 1
        assert run.run_through(3).ran
        assert run.run_through(4).reason == "needs a Raspberry Pi"
        assert "no-such-command-here is not on PATH" in run.run_through(5).reason
        with pytest.raises(AssertionError, match=r"(?s)exited with status 1.*to stdout.*to stderr"):
            run.run_through(6)
        assert "page.md:" in run.run_through(7).reason and not run.run_through(7).ran
    finally:
        procs = [proc for _, proc, _ in run.background]
        run.close()
    assert procs and all(proc.poll() is not None for proc in procs)  # the server is stopped


def test_a_background_block_that_exits_fails_the_next_block(tmp_path):
    port = _free_port()
    page = tmp_path / "page.md"
    page.write_text(
        f"<!-- test: background wait=tcp:127.0.0.1:{port} -->\n"
        f"```sh\npython -c \"import socket, time; s = socket.create_server(('127.0.0.1', {port}))"
        '; time.sleep(1)"\n```\n'
        "```sh\nsleep 3\n```\n```sh\necho late\n```\n"
    )
    run = PageRun(page, tmp_path / "run")
    try:
        assert run.run_through(0).ran
        assert run.run_through(1).ran  # the server is still up when this block starts
        with pytest.raises(AssertionError, match=r"exited .* before the page ended"):
            run.run_through(2)
    finally:
        run.close()
