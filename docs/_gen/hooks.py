"""MkDocs hooks (mkdocs.yml ``hooks:``): the reference pages generated from the code (reference_pages.py), and
Sphinx roles in docstrings as links (rst_roles.py). A config key without a comment stops the build."""
from __future__ import annotations

import pathlib
import sys

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import config_page  # noqa: E402  pylint: disable=wrong-import-position
import reference_pages  # noqa: E402  pylint: disable=wrong-import-position
import rst_roles  # noqa: E402  pylint: disable=wrong-import-position


def on_files(files, config):
    """Adds the generated pages; a generation error is a build error."""
    try:
        pages = reference_pages.generated_pages()
    except config_page.UndocumentedKeys as error:
        raise PluginError(str(error)) from None
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_content(html, page, config, files):  # pylint: disable=unused-argument
    return rst_roles.link_roles(html)
