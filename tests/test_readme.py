"""README is the first screen: its two Quick-start commands are the ones CI and users run, and its links lead
somewhere. Its former sections live in docs/ now; tests/test_guides.py runs their code blocks."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md")).read()


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "python -m at_jax.train" in commands[0]
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command.startswith("python -m pytest")
    ci_script = open(os.path.join(REPO, ".ci", "run")).read()
    assert test_command in ci_script


def test_readme_fits_on_two_screens_and_its_links_lead_to_files():
    assert len(README.splitlines()) <= 120
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert len(targets) >= 15
    missing = [target for target in targets if not os.path.exists(os.path.join(REPO, target))]
    assert not missing, missing
