"""A local Sphinx extension for conveyor's API reference.

- Typing overloads stay out: autodoc shows every ``@overload`` of a function
  instead of its real signature. conveyor's decorators have a dozen overloads
  each, written for type checkers (they read the task's types off the
  decorated function); a reader needs the one signature that runs, so autodoc
  is made to see no overloads.
- Private parameters (``_side_args``...) are left out of signatures, and the
  decorators' private protocol return types are shown as the callables they are.
- A type alias or constant re-exported by ``conveyor`` gets the ``#:``
  comment written above it in the module that defines it.
- ``{conveyor-compat-modules}`` lists the conveyor-streaming 1.2 submodules
  and the names each re-exports, read from their ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.inspect import stringify_signature

import conveyor

# The submodule paths of conveyor-streaming 1.2, kept so that old imports work.
COMPAT_MODULES = (
    "conveyor.context",
    "conveyor.decorators",
    "conveyor.error_handling",
    "conveyor.pipeline",
    "conveyor.stream",
    "conveyor.tasks",
)

_analyze = ModuleAnalyzer.analyze


def _analyze_without_overloads(self: ModuleAnalyzer) -> None:
    _analyze(self)
    self.overloads = {}


# The decorators' protocols exist for type checkers only; a reader sees what they are.
PRIVATE_RETURN_TYPES = {
    "_SingleTaskDecorator": "Callable[[Callable[..., Any]], SingleTask[Any, Any]]",
    "_BatchTaskDecorator": "Callable[[Callable[..., Any]], BatchTask[Any, Any]]",
}


class CompatModules(SphinxDirective):
    """``{conveyor-compat-modules}``: each old submodule and the names it re-exports.

    The names are read from each module's ``__all__`` at build time, and each
    one links to its entry under ``conveyor`` in the reference, so the list
    cannot go stale.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        items = nodes.bullet_list()
        for module_name in COMPAT_MODULES:
            module = importlib.import_module(module_name)
            paragraph = nodes.paragraph()
            paragraph += nodes.literal(text=module_name)
            paragraph += nodes.Text(": ")
            exported = [name for name in module.__all__ if name in conveyor.__all__]
            for position, name in enumerate(exported):
                if position:
                    paragraph += nodes.Text(", ")
                ref = addnodes.pending_xref(
                    "", refdomain="py", reftype="obj", reftarget=f"conveyor.{name}"
                )
                ref["refexplicit"] = True
                ref += nodes.literal(text=f"{module_name}.{name}")
                paragraph += ref
            items += nodes.list_item("", paragraph)
        return [items]


def _without_private_parameters(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    if what == "function" and return_annotation:
        shown_return = return_annotation
        for private, public in PRIVATE_RETURN_TYPES.items():
            shown_return = shown_return.replace(private, public)
        return (signature or "()"), shown_return
    if what != "class" or not signature or "_" not in signature:
        return None
    try:
        full = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    kept = [p for p in full.parameters.values() if not p.name.startswith("_")]
    if len(kept) == len(full.parameters):
        return None
    shown = full.replace(parameters=kept)
    text = stringify_signature(shown, show_return_annotation=False, unqualified_typehints=True)
    return text, return_annotation


def _defining_module_comment(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give ``conveyor.X`` (a type alias or constant) the ``#:`` comment of its definition."""
    if what != "data" or not name.startswith("conveyor."):
        return
    short = name.rpartition(".")[2]
    for module_name in ("conveyor", *COMPAT_MODULES):
        found = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", short))
        if found:
            lines[:] = [*found, "", *(line for line in lines if line.startswith("alias of"))]
            return


def setup(app: Sphinx) -> dict[str, Any]:
    ModuleAnalyzer.analyze = _analyze_without_overloads  # type: ignore[method-assign]
    app.add_directive("conveyor-compat-modules", CompatModules)
    app.connect("autodoc-process-signature", _without_private_parameters)
    app.connect("autodoc-process-docstring", _defining_module_comment)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
