"""Sphinx configuration: the Markdown pages (MyST) and the API reference (autodoc).

Build: ``nox -s docs``, or ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
The build uses no network: there is no intersphinx.
"""

from __future__ import annotations

import sys
from pathlib import Path

import conveyor

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "conveyor"
author = "conveyor developers"
copyright = "conveyor developers"
release = conveyor.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "conveyor_docs",  # docs/_ext/conveyor_docs.py: one signature per overloaded function
]

root_doc = "index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# README.md says how to build the site; it is not a page of it.
exclude_patterns = ["_build", "_ext", "pictures", "README.md"]

# MyST: GitHub-style heading anchors, so ``page.md#a-heading`` links work on
# GitHub and on the site alike.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, type hints in the signature only once.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "special-members": "__call__", "show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"conveyor {release}"
html_static_path: list[str] = []
