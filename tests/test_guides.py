"""The documentation pages run as written: every ```python and ```bash block of docs/guides/ and docs/topics/ runs
here at a small size, or its page says why not (the convention: tests/doc_blocks.py).

The guides build on the runs of docs/guides/first-run.md (``runs/demo``): that page runs once per test session
(shared by the xdist workers, like conftest's teacher), and the pages that use its runs see them as
``runs/demo`` in their own working directory."""
import fcntl
import json
import os

import pytest

from conftest import shared_root
from doc_blocks import Workspace, convention_problems, pages, read_blocks
from trainer_utils import metrics_records

#: Every page with a block that runs has its test here (the first test checks that none is left out).
PAGES_RUN_HERE = {
    "guides/first-run.md", "guides/reading-attention-figures.md", "guides/your-network.md",
    "guides/your-loss-term.md", "guides/gradient-attention.md",
    "guides/imagenet-on-a-pod.md", "guides/reproducing-the-paper.md", "topics/functional-api.md",
    "topics/training.md",
}


def test_every_block_runs_here_or_says_why_not():
    assert pages(), "no documentation pages found"
    problems = [problem for page in pages() for problem in convention_problems(page)]
    assert not problems, "\n".join(problems)
    with_runs = {page for page in pages() if any(block.runs for block in read_blocks(page))}
    assert with_runs <= PAGES_RUN_HERE, f"pages whose blocks no test runs: {sorted(with_runs - PAGES_RUN_HERE)}"
    assert PAGES_RUN_HERE <= with_runs, f"pages with nothing left to run: {sorted(PAGES_RUN_HERE - with_runs)}"


def test_the_convention_is_enforced(tmp_path, monkeypatch):
    import doc_blocks  # pylint: disable=import-outside-toplevel

    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "page.md").write_text(
        "```\nls\n```\n<!-- not run: -->\n```bash\nls\n```\n<!-- not run: needs a pod -->\n```bash\nlaunch\n```\n"
        "<!-- test: --config.batch_size=4 -->\n"
        "```bash\npython -m at_jax.train --workdir=x \\\n  --config.seed=1  # c\n```\n")
    monkeypatch.setattr(doc_blocks, "DOCS", str(tmp_path))
    problems = convention_problems("guides/page.md")
    assert len(problems) == 2 and "fence tagged ''" in problems[0] and "needs a reason" in problems[1]
    blocks = read_blocks("guides/page.md")
    assert [block.runs for block in blocks] == [False, False, False, True]
    assert blocks[2].not_run == "needs a pod" and blocks[3].test_args == ("--config.batch_size=4",)
    assert doc_blocks.commands(blocks[3].text) == ["python -m at_jax.train --workdir=x    --config.seed=1  # c"]


def test_gradient_attention(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.run_page("guides/gradient-attention.md")
    terms = workspace.namespace["terms"]
    assert set(terms) == {"ce", "grad_at", "min_l2", "symmetry"} and all(float(v) > 0 for v in terms.values())
    assert sorted(workspace.namespace["grads"]) == ["Conv_0", "Dense_0"]


@pytest.mark.slow
def test_imagenet_on_a_pod(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.run_page("guides/imagenet-on-a-pod.md")
    assert workspace.output_of("check_data").strip() == "36 image files readable"
    run = tmp_path / "runs" / "imagenet" / "rehearsal"
    assert json.load(open(run / "config.json"))["dataset"]["pipeline"] == "stream"
    assert _summary(run)["step"] == 2


def test_functional_api_page(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.run_page("topics/functional-api.md")
    namespace = workspace.namespace
    assert namespace["q"].shape == (8, 256)
    assert float(namespace["loss"]) > 0
    assert len(namespace["features"]) == 3 and namespace["logits"].shape == (2, 10)


def test_training_page_notebook(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.run_page("topics/training.md")
    namespace = workspace.namespace
    assert namespace["summary"]["ema_accuracy"] is not None and namespace["variables"]["params"]
    assert (tmp_path / "runs" / "notebook" / "summary.json").exists()


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """docs/guides/first-run.md run once per session (under a lock, for every xdist worker); its directory."""
    root = shared_root(tmp_path_factory)
    directory = root / "guide_first_run"
    with open(root / "guide_first_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "done").exists():
            Workspace(directory).run_page("guides/first-run.md")
            (directory / "done").write_text("")
    return directory


@pytest.fixture
def after_first_run(first_run, tmp_path):
    """A page's workspace where ``runs/demo`` is the first run's."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(first_run / "runs" / "demo")
    return Workspace(tmp_path)


def _summary(directory) -> dict:
    return json.load(open(os.path.join(directory, "summary.json")))


@pytest.mark.slow
def test_first_run(first_run):
    demo = first_run / "runs" / "demo"
    assert {"teacher", "student", "student_at"} <= set(os.listdir(demo))
    assert _summary(demo / "student_at")["teacher"] == "wrn-10-2"
    record = metrics_records(demo / "student_at")[0]
    assert record["train/at"] > 0 and record["train/at/2"] > 0


@pytest.mark.slow
def test_reading_attention_figures(after_first_run):
    after_first_run.run_page("guides/reading-attention-figures.md")
    for figure in ("attention.png", "curves.png"):
        assert os.path.getsize(os.path.join(after_first_run.directory, figure)) > 10_000
    assert after_first_run.namespace["maps"].shape == (8, 10, 10)   # the last group's maps


@pytest.mark.slow
def test_your_network(after_first_run):
    after_first_run.run_page("guides/your-network.md")
    listing = after_first_run.output_of("--model=my-cnn").split()
    assert listing[:3] == ["conv1", "(1,", "40,"] and "head" in listing
    runs = os.path.join(after_first_run.directory, "runs")
    assert sorted(os.listdir(os.path.join(runs, "my_net"))) == ["student", "student_at"]
    record = metrics_records(os.path.join(runs, "my_net", "student_at"))[0]
    assert record["train/at/0"] > 0 and record["train/at/1"] > 0     # the two named layer pairs
    assert _summary(os.path.join(runs, "noise"))["dataset"] == "noise"


@pytest.mark.slow
def test_your_loss_term(after_first_run):
    after_first_run.run_page("guides/your-loss-term.md")
    demo = os.path.join(after_first_run.directory, "runs", "demo")
    record = metrics_records(os.path.join(demo, "student_logit_match"))[0]
    assert record["train/logit_match"] > 0
    assert abs(record["train/total"] - (record["train/task"] + 0.1 * record["train/logit_match"])) < 1e-4
    assert "student_logit_match" in after_first_run.output_of("--config=my_config.py")


@pytest.mark.slow
def test_reproducing_the_paper(after_first_run):
    """The experiment with the first run's teacher (the page's test marker), one seed, methods none and AT."""
    after_first_run.run_page("guides/reproducing-the-paper.md")
    results = open(os.path.join(after_first_run.directory, "runs", "cm", "results.md")).read()
    assert "| at_jax | wrn-10-1" in results and "## Paired differences from none" in results
    assert after_first_run.output_of("cat runs/cm/results.md") == results
