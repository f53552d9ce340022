"""The examples run as shipped."""
import os
import subprocess
import sys

from trainer_utils import REPO


def test_custom_gradient_loss_example_trains():
    result = subprocess.run([sys.executable, os.path.join(REPO, "examples", "custom_gradient_loss.py")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = float(result.stdout.split("student test accuracy")[1].split()[0])
    assert accuracy > 0.8  # 150 steps on scikit-learn's digits
