"""The code blocks of the documentation pages, and running them as a reader would (tests/test_guides.py).

The convention, for every page in docs/guides/ and docs/topics/:

- A fenced block tagged ```python or ```bash is code, and the tests run it, unless the line just above its fence
  is ``<!-- not run: REASON -->`` (a reason is required: what it needs that a CI machine lacks, or which test
  runs it already). A block tagged ```text is printed output or a listing, never run. A fence without a tag, or
  with another tag, is refused, so that no command slips past the tests under another name.
- ``<!-- test: ARGS -->`` just above a bash block: ARGS are added, after :data:`SMALL_TRAIN` (or
  :data:`SMALL_EXPERIMENT`), to each ``python -m at_jax.train`` (or ``at_jax.experiment``) command of the block
  when the tests run it: the small-size overrides that block needs beyond the common ones, shown in the page
  source, invisible on the site.
- A python block whose first line is ``# NAME.py`` is a file the reader saves: the tests write it to NAME.py in
  the page's working directory. Every other python block is executed, in page order, in one namespace per page.
- A bash block runs command by command (a line ending in ``\\`` continues on the next; ``#`` starts a comment) in
  the page's working directory, where ``configs/``, ``examples/``, ``launch/`` and ``benchmarks/`` are links
  to the repository's, as in a checkout. ``export NAME=VALUE`` sets a variable for the page's later commands.
  Each command runs in a shell (bash -euo pipefail) with this interpreter's ``python`` first on the PATH: the
  entry points start as a reader's do, with their own XLA:CPU settings.

Every ``python -m at_jax.train`` command gets :data:`SMALL_TRAIN` (2 steps, a log and checkpoint each step, no
progress bar, metrics to metrics.jsonl only, no attention figure at the end of a run), and every ``python -m
at_jax.experiment`` command :data:`SMALL_EXPERIMENT` (the same for each run, one seed), after what the page
wrote: the same command, at a size CI affords.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
PAGE_DIRS = ("guides", "topics")
LINKED_FROM_REPO = ("configs", "examples", "launch", "benchmarks")
CODE = ("python", "bash")
NOT_CODE = ("text",)

SMALL_TRAIN = ("--config.num_train_steps=2", "--config.log_every_steps=1", "--config.checkpoint_every_steps=2",
               "--config.progress=False", "--config.metrics.writers=jsonl", "--config.metrics.attention_figure=False")
SMALL_EXPERIMENT = ("--config.seeds=1", "--config.base.num_train_steps=2", "--config.base.log_every_steps=1",
                    "--config.base.checkpoint_every_steps=2", "--config.base.progress=False",
                    "--config.base.metrics.writers=jsonl", "--config.base.metrics.attention_figure=False")

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->$")
_TEST_ARGS = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")
_FILE = re.compile(r"^#\s*([\w.-]+\.py)\b")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str             # path relative to docs/, e.g. "guides/first-run.md"
    line: int             # 1-based line of the opening fence
    language: str
    text: str
    not_run: str | None   # the reason given in <!-- not run: ... -->, None when the block runs
    test_args: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.language in CODE and self.not_run is None

    @property
    def file_name(self) -> str | None:
        """NAME.py for a python block that is a file to save (first line ``# NAME.py``), else None."""
        match = _FILE.match(self.text.lstrip()) if self.language == "python" else None
        return match.group(1) if match else None


def pages() -> list[str]:
    """Every page the convention covers, relative to docs/."""
    found = []
    for directory in PAGE_DIRS:
        folder = os.path.join(DOCS, directory)
        if os.path.isdir(folder):
            found += [f"{directory}/{name}" for name in sorted(os.listdir(folder)) if name.endswith(".md")]
    return found


def read_blocks(page: str) -> list[Block]:
    """The fenced blocks of docs/``page``, with their markers. A fence never closed is an error."""
    lines = open(os.path.join(DOCS, page), encoding="utf-8").read().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start, language = index, match.group(1)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].rstrip() == "```"), None)
        if end is None:
            raise ValueError(f"docs/{page}:{start + 1}: a code fence that is never closed")
        above = lines[start - 1].strip() if start else ""
        not_run = _NOT_RUN.match(above)
        test_args = _TEST_ARGS.match(above)
        blocks.append(Block(page, start + 1, language, "\n".join(lines[start + 1:end]) + "\n",
                            not_run.group(1) if not_run else None,
                            tuple(shlex.split(test_args.group(1))) if test_args else ()))
        index = end + 1
    return blocks


def convention_problems(page: str) -> list[str]:
    """What breaks the convention on a page: untagged or unknown fences, not-run markers without a reason."""
    problems = []
    for block in read_blocks(page):
        if block.language not in CODE + NOT_CODE:
            problems.append(f"{block.where}: fence tagged {block.language!r}; use one of {', '.join(CODE + NOT_CODE)}")
        elif block.not_run is not None and not block.not_run:
            problems.append(f"{block.where}: <!-- not run: --> needs a reason")
        elif block.language in NOT_CODE and (block.not_run is not None or block.test_args):
            problems.append(f"{block.where}: a {block.language} block is never run; drop its marker")
    return problems


def commands(script: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, blank and comment-only lines dropped."""
    joined, pending = [], ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    return [command.strip() for command in joined if command.strip() and not command.strip().startswith("#")]


class Workspace:
    """A page's working directory (``configs/`` etc. linked from the repository), its python namespace and
    the variables its ``export`` lines set; :meth:`run` runs one block, :meth:`run_page` all of a page."""

    def __init__(self, directory):
        self.directory = str(directory)
        os.makedirs(self.directory, exist_ok=True)
        for name in LINKED_FROM_REPO:
            link = os.path.join(self.directory, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(REPO, name), link)
        # a module of its own, so that classes defined in a block (flax modules are dataclasses) find it
        module = types.ModuleType(f"doc_page_{abs(hash(self.directory))}")
        sys.modules[module.__name__] = module
        self.namespace: dict = module.__dict__
        self.env: dict[str, str] = {}
        self.outputs: list[tuple[str, str]] = []    # (command, its stdout), in the order they ran

    def run_page(self, page: str) -> list[Block]:
        """Runs every block of ``page`` that runs, in order; returns them."""
        ran = [block for block in read_blocks(page) if block.runs]
        for block in ran:
            self.run(block)
        return ran

    def run(self, block: Block) -> None:
        with _in_directory(self.directory), _registries_kept():
            if block.language == "python":
                self._python(block)
            else:
                for command in commands(block.text):
                    self._command(block, command)

    def _python(self, block: Block) -> None:
        if block.file_name:
            with open(os.path.join(self.directory, block.file_name), "w", encoding="utf-8") as file:
                file.write(block.text)
            return
        exec(compile(block.text, block.where, "exec"), self.namespace)  # pylint: disable=exec-used

    def _command(self, block: Block, command: str) -> None:
        if command.startswith("export ") and "=" in command:
            name, value = shlex.split(command[len("export "):], comments=True)[0].split("=", 1)
            self.env[name] = os.path.expandvars(self._expand(value))
            return
        expanded = self._expand(command)
        words = shlex.split(expanded, comments=True)
        extra = {"at_jax.train": SMALL_TRAIN, "at_jax.experiment": SMALL_EXPERIMENT}.get(
            words[2] if words[:2] == ["python", "-m"] and len(words) > 2 else "")
        if extra is not None:   # the entry point's own flags first, then the small size, then the block's
            expanded = shlex.join([*words, *extra, *block.test_args])
        self._shell(block, expanded)

    def _expand(self, text: str) -> str:
        for name, value in self.env.items():
            text = text.replace(f"${{{name}}}", value).replace(f"${name}", value)
        return text

    def _shell(self, block: Block, command: str) -> None:
        env = dict(os.environ, **self.env)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=self.directory, env=env,
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise AssertionError(f"{block.where}: `{command}` exited {result.returncode}\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        self.outputs.append((command, result.stdout))

    def output_of(self, fragment: str) -> str:
        """The stdout of the last command that contains ``fragment``."""
        return next(out for command, out in reversed(self.outputs) if fragment in command)


@contextlib.contextmanager
def _in_directory(directory: str):
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _registries_kept():
    """What a page registers (models, loss terms, datasets) is gone after it: other tests in this process see
    at_jax's own registries."""
    # pylint: disable=import-outside-toplevel,protected-access
    from at_jax.data import registry as data_registry
    from at_jax.losses import terms
    from at_jax.models import registry as model_registry

    saved = (dict(terms._REGISTRY), list(model_registry._REGISTRY), dict(data_registry._LOADERS),
             dict(data_registry._REGISTERED))
    try:
        yield
    finally:
        for current, kept in zip((terms._REGISTRY, model_registry._REGISTRY, data_registry._LOADERS,
                                  data_registry._REGISTERED), saved):
            current.clear()
            current.update(kept) if isinstance(current, dict) else current.extend(kept)
