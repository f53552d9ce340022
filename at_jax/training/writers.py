"""Where a run's metrics go besides ``metrics.jsonl``: the writers named by ``config.metrics.writers``.

``config.metrics.writers`` is a comma-separated list of :data:`WRITERS`:

- ``jsonl``: ``metrics.jsonl`` in the run directory, always written (listed or not) by
  :class:`at_jax.training.metrics.MetricWriter` itself;
- ``tensorboard``: TensorBoard event files in ``<run dir>/tensorboard`` (tensorboardX, no TensorFlow);
- ``wandb``: a Weights & Biases run (``pip install wandb``) in ``config.metrics.wandb_project``, its local
  files in ``<run dir>/wandb``; ``WANDB_MODE=offline`` (wandb's own setting) keeps it off the network.

Each writer here takes a run's scalars at a step, the run's config when it starts, its summary when it ends
and images (attention figures); TensorBoard shows config and summary as text, wandb keeps them as the run's
config and summary.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
from typing import Any, Mapping, Sequence, Union

import numpy as np

from at_jax.errors import ConfigError
from at_jax.run_files import absolute, as_path, is_remote

#: The writer names ``config.metrics.writers`` accepts; "jsonl" is always written.
WRITERS = ("jsonl", "tensorboard", "wandb")

#: An image for :meth:`write_image`: a PNG (or any PIL-readable) file's path, or an array (H, W) or (H, W, C)
#: of uint8, or of floats in [0, 1].
Image = Union[str, os.PathLike, np.ndarray]


def writer_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The writers of ``spec`` (``"jsonl,tensorboard"`` or a sequence of names), "jsonl" first whether listed
    or not, each once. Raises :class:`ConfigError` for an unknown name, or for "wandb" when it is not
    installed: this writes nothing, so a config check can call it before a run starts."""
    names = [name.strip() for name in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in WRITERS]
    if unknown:
        raise ConfigError(f"metrics.writers: unknown writer {unknown[0]!r}; valid: {', '.join(WRITERS)} "
                          "(comma-separated)")
    if "wandb" in names and importlib.util.find_spec("wandb") is None:
        raise ConfigError("metrics.writers has wandb, which is not installed: pip install wandb")
    return tuple(dict.fromkeys(["jsonl", *names]))


def json_safe(record: Mapping) -> dict:
    """``record`` as plain JSON types (tuples as lists, anything else JSON lacks as its ``str``)."""
    return json.loads(json.dumps(dict(record), default=str))


def as_markdown(record: Mapping) -> str:
    """``record`` as indented JSON in a markdown code block (how TensorBoard's text tab shows it)."""
    text = json.dumps(json_safe(record), indent=2, sort_keys=True)
    return "\n".join("    " + line for line in text.splitlines())


def image_array(image: Image) -> np.ndarray:
    """``image`` as an (H, W, 3) uint8 RGB array (a path is read with PIL, local or a URL)."""
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image as PILImage  # pylint: disable=import-outside-toplevel
        with PILImage.open(io.BytesIO(as_path(image).read_bytes())) as opened:
            return np.asarray(opened.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image is (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}")
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]


def numbers(scalars: Mapping[str, Any]) -> dict:
    """The entries of ``scalars`` that are numbers (not booleans, not text): what the writers plot."""
    return {name: value for name, value in scalars.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def wandb_run_id(run_dir: str) -> str:
    """A wandb run id that is the same every time ``run_dir`` (as an absolute path) trains: a resumed run
    continues its wandb run."""
    return "at_jax-" + hashlib.sha256(str(absolute(run_dir)).encode()).hexdigest()[:20]


def wandb_run_name(run_dir: str, run_name: str = "") -> str:
    """The wandb display name: the run directory's name, after ``config.run_name`` where that is set (an
    experiment's ``"at/seed_0"``, a job's method), unless it already ends with it."""
    dir_name = as_path(run_dir).name
    if not run_name or run_name == dir_name or run_name.endswith("/" + dir_name):
        return run_name or dir_name
    return f"{run_name}/{dir_name}"


class TensorBoardWriter:
    """TensorBoard event files in ``<run dir>/tensorboard``; on resume from ``resume_step``, events after it
    (written before an interruption) are purged. The config is written as text at ``resume_step``. Events on
    gs:// go through tensorboardX's own writer (it needs google-cloud-storage)."""

    def __init__(self, run_dir: str, resume_step: int = 0, config: Mapping | None = None):
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._writer = SummaryWriter(str(as_path(run_dir) / "tensorboard"),
                                     purge_step=resume_step + 1 if resume_step else None)
        if config is not None:
            self._writer.add_text("config", as_markdown(config), resume_step)
            self._writer.flush()

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in numbers(scalars).items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def write_summary(self, summary: Mapping, step: int) -> None:
        self._writer.add_text("summary", as_markdown(summary), step)
        self._writer.flush()

    def write_image(self, name: str, image: Image, step: int) -> None:
        self._writer.add_image(name, image_array(image), step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbWriter:
    """A Weights & Biases run of ``project``: the config at start, scalars at each write, the summary into
    ``run.summary``, finished on close. Its id comes from the run directory, so a resumed run continues it.
    Its local files go to ``<run dir>/wandb`` (to wandb's default place, or ``WANDB_DIR``, for a URL)."""

    def __init__(self, run_dir: str, config: Mapping | None = None, project: str = "at_jax"):
        import wandb  # pylint: disable=import-outside-toplevel
        self._wandb = wandb
        config = json_safe(config or {})
        try:
            self.run = wandb.init(project=project, name=wandb_run_name(run_dir, config.get("run_name") or ""),
                                  dir=None if is_remote(run_dir) else os.fspath(absolute(run_dir)),
                                  config=config, resume="allow", id=wandb_run_id(run_dir),
                                  reinit="create_new")
        except wandb.errors.Error as error:
            raise ConfigError(f"metrics.writers has wandb, which could not start: {' '.join(str(error).split())} (or set "
                              "WANDB_MODE=offline to keep the run on this machine)") from None

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self.run.log(numbers(scalars), step=step)

    def write_summary(self, summary: Mapping, step: int) -> None:  # pylint: disable=unused-argument
        self.run.summary.update(json_safe(summary))

    def write_image(self, name: str, image: Image, step: int) -> None:
        self.run.log({name: self._wandb.Image(image_array(image))}, step=step)

    def close(self) -> None:
        self.run.finish()


def open_writers(names: Sequence[str], run_dir: str, resume_step: int = 0, config: Mapping | None = None,
                 wandb_project: str = "at_jax") -> list:
    """The writers ``names`` asks for besides "jsonl" (which :class:`MetricWriter` writes itself), started
    for ``run_dir``; if one cannot start, those already started are closed."""
    writers: list = []
    try:
        for name in names:
            if name == "tensorboard":
                writers.append(TensorBoardWriter(run_dir, resume_step, config))
            elif name == "wandb":
                writers.append(WandbWriter(run_dir, config, wandb_project))
    except BaseException:
        for writer in writers:
            writer.close()
        raise
    return writers
