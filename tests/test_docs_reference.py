"""The documentation site's generated reference (docs/_gen/): a config key without a comment is reported, and
every config key, model name, loss term, public name and command-line flag appears on its page."""
import pathlib
import sys

import pytest

DOCS_GEN = pathlib.Path(__file__).resolve().parents[1] / "docs" / "_gen"
sys.path.insert(0, str(DOCS_GEN))

# pylint: disable=wrong-import-position,import-error
import api_page  # noqa: E402
import cli_flags  # noqa: E402
import config_comments  # noqa: E402
import config_page  # noqa: E402
import md_text  # noqa: E402
import reference_pages  # noqa: E402
import rst_roles  # noqa: E402

SOURCE = '''
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0                 # the run seed
    config.batch_size = 64
    # Two keys that share this note.
    config.first = 1
    config.second = 2
    config.third = 3                # its own comment ends the note's reach
    config.fourth = 4

    # A detached comment, then a blank line.

    config.loss = ml_collections.ConfigDict()
    config.loss.beta = 1.0          # weight
    return config
'''


def _config():
    import ml_collections  # pylint: disable=import-outside-toplevel
    namespace: dict = {}
    exec(compile(SOURCE, "<config>", "exec"), namespace)  # pylint: disable=exec-used
    assert isinstance(namespace["get_config"](), ml_collections.ConfigDict)
    return namespace["get_config"]()


def test_comments_trailing_and_notes():
    comments = config_comments.key_comments(SOURCE)
    assert comments["seed"].own == "the run seed"
    assert comments["first"].note == comments["second"].note == "Two keys that share this note."
    assert comments["second"].note_key == "first"
    assert comments["third"].own and comments["third"].note      # the note's run, with a comment of its own
    assert not comments["fourth"].documented                     # past the note's reach
    assert not comments["loss"].note                             # a blank line detaches a comment


def test_a_key_without_a_comment_is_reported_by_name_and_line():
    with pytest.raises(config_page.UndocumentedKeys) as error:
        config_page.config_page(SOURCE, _config())
    message = str(error.value)
    assert "batch_size (line 8)" in message and "fourth (line 13)" in message
    assert "seed" not in message.replace("batch_size", "") and "loss.beta" not in message


def test_a_key_not_assigned_in_get_config_is_reported():
    config = _config()
    config.extra = 1
    comments = config_comments.key_comments(SOURCE)
    assert config_comments.undocumented(["extra"], comments) == ["extra: no `config.extra = ...` line in get_config()"]


def test_every_key_of_the_default_config_is_on_its_page_with_its_default():
    from at_jax.default_config import get_config  # pylint: disable=import-outside-toplevel
    page = reference_pages.config_reference()
    keys = config_page.leaves(get_config())
    assert len(keys) > 80
    for key, default in keys.items():
        assert f'<span id="{key}"></span>`{key}` | {md_text.code(config_page.default_text(default))} |' in page, key
    assert "| `loss.at_beta` |" not in page                   # every key row carries its anchor
    assert "`parallel_sweep` | `\"\"` | See [`parallel_runs`](#parallel_runs)." in page


def test_every_registry_model_and_its_options_are_on_the_models_page():
    from at_jax.models import registry  # pylint: disable=import-outside-toplevel
    page = reference_pages.models_reference()
    zoo = [entry for entry in registry._REGISTRY if not entry.source]  # pylint: disable=protected-access
    assert len(zoo) >= 9
    for entry in zoo:
        assert md_text.literal(entry.description) in page
    assert "`stem='imagenet'`" in page and "`depth=12`" in page        # ResNet's field, ViT's builder default
    assert "`width=" not in page                                       # fixed by the name wrn-D-K
    assert "::: at_jax.models.wrn.WideResNet" in page


def test_every_loss_term_is_on_the_losses_page():
    from at_jax.losses import registered_terms  # pylint: disable=import-outside-toplevel
    page = reference_pages.losses_reference()
    builtin = [term for term in registered_terms() if term.builtin]
    assert {term.name for term in builtin} >= {"at", "kd", "factt", "grad_at", "grad_penalty", "flip_symmetry"}
    for term in builtin:
        assert f"[`loss.{term.weight_key}`](config.md#loss.{term.weight_key})" in page
    assert "::: at_jax.losses" in page


def test_every_public_name_is_on_the_api_page():
    import at_jax  # pylint: disable=import-outside-toplevel
    page = reference_pages.api_reference()
    for name in at_jax.__all__:
        assert f"::: at_jax.{name}" in page or f"heading: at_jax.{name}" in page or f"`at_jax.{name}`" in page, name


def test_a_function_shadowed_by_a_module_must_be_declared(monkeypatch):
    import at_jax  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(api_page, "SHADOWED", {})
    with pytest.raises(api_page.ShadowedName, match="at_jax.train"):
        api_page.entry(at_jax, "train")


def test_every_entry_point_and_flag_is_on_the_cli_page():
    modules = cli_flags.entry_points(reference_pages.ROOT / "at_jax")
    assert modules[:2] == ["at_jax.train", "at_jax.experiment"]
    assert {"at_jax.visualize", "at_jax.segment", "at_jax.inspect", "at_jax.import_timm", "at_jax.import_torchvision",
            "at_jax.check_data", "at_jax.compile_for"} <= set(modules)
    collected = cli_flags.collect_in_subprocess(modules, reference_pages.ROOT)
    page = reference_pages.cli_page.cli_page(collected)
    for module, found in collected.items():
        assert f"## `python -m {module}`" in page
        assert all(f"`--{flag['name']}`" in page or f"`--[no]{flag['name']}`" in page for flag in found["flags"])
    assert "`--[no]per_image`" in page and "`--image-size`" in page and "`--num-images`" in page
    assert "one of `resnet18`, `resnet34`" in page            # an enum flag's choices
    assert page.count("`--config.KEY=VALUE`") == 3             # train, experiment and compile_for take overrides
    assert "`--[no]find-max-batch`" in page and "`--num-slices`" in page


def test_roles_become_optional_cross_references():
    html = "<p>see :func:<code>at_jax.at_loss</code> and :class:<code>~at_jax.errors.UserError</code></p>"
    linked = rst_roles.link_roles(html)
    assert '<autoref identifier="at_jax.at_loss" optional><code>at_jax.at_loss</code></autoref>' in linked
    assert '<autoref identifier="at_jax.errors.UserError" optional><code>UserError</code></autoref>' in linked


def test_literal_text_and_code_spans_survive_markdown_and_tables():
    assert md_text.literal("workdir/<run name> | a_b *c*") == r"workdir/&lt;run name&gt; \| a\_b \*c\*"
    assert md_text.code("a`b") == "``a`b``" and md_text.code('"x" | y') == r'`"x" \| y`'
    assert md_text.docstring("Usage::\n\n        python -m x\n\n    Then.\n") == "Usage:\n\n    python -m x\n\nThen."
