"""Griffe extension for the API pages: Sphinx cross-reference roles in satclip's docstrings
(``:func:`satclip.encode```, ``:class:`~satclip.models.location.LocationEncoder```) rendered as
inline code (``satclip.encode``, ``LocationEncoder``) instead of showing the role's markup.

Loaded by mkdocstrings through ``extensions:`` in mkdocs.yml.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

# :role:`target`, :py:role:`~target`, :role:`title <target>`
ROLE = re.compile(r":(?:py:)?[a-z]+:`(?P<tilde>~?)(?P<body>[^`<]*?)(?:\s*<(?P<target>[^`>]+)>)?`")


def _replace(match: re.Match[str]) -> str:
    body = match["body"].strip()
    if match["target"]:  # an explicit title
        return f"`{body}`"
    if match["tilde"]:  # ~a.b.c shows only c
        body = body.rsplit(".", 1)[-1]
    return f"`{body}`"


def plain_roles(text: str) -> str:
    return ROLE.sub(_replace, text)


class SphinxRoles(Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
