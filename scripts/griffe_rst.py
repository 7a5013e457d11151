"""A griffe extension for the docs build only: whisperpool's docstrings use a few reST
constructs that Markdown does not know. This rewrites them as the docstrings are loaded
(the source files are not touched):

* roles such as :class:`~whisperpool.pool.ProcessPool` or :meth:`Worker.set_state`
  become code spans (`ProcessPool`, `Worker.set_state`), so that the reference does not
  depend on internal module paths;
* a reST simple table (lines of ``=====  =====``) becomes a fenced text block.

Loaded by mkdocs.yml (plugins: mkdocstrings: handlers: python: options: extensions).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_TABLE_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _tables(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    rules = 0
    for line in lines:
        if _TABLE_RULE.match(line):
            if rules == 0:
                out.append("```text")
            rules += 1
            out.append(line)
            if rules == 3:  # top rule, header rule, bottom rule
                out.append("```")
                rules = 0
            continue
        out.append(line)
    return "\n".join(out)


def rewrite(text: str) -> str:
    return _tables(_ROLE.sub(_role, text))


class RestToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
