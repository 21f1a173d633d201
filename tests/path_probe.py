"""Server paths in what a visitor sees: every element of a dashboard page (as Streamlit sends it) and its address bar,
an HTTP answer's body and headers, a command's output. A test names the folders that must not show: its temporary
folders, the repository."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from streamlit.testing.v1 import AppTest

CONTEXT = 60  # characters shown either side of a path found


def _nodes(node) -> Iterator:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def page_texts(app: AppTest) -> list[str]:
    """Every element and block of the page and the sidebar as its message's text (labels, values, options, help,
    chart specs, table data, link targets), and the address bar's query."""
    texts = [str(node.proto) for node in _nodes(app._tree) if getattr(node, "proto", None) is not None]
    return texts + [f"{key}={value}" for key, value in dict(app.query_params).items()]


def leaks(texts: Iterable[str], *folders: str | os.PathLike) -> list[str]:
    """An excerpt around every place a text names one of the folders (as given or resolved); [] when none does."""
    paths = {str(f) for f in folders} | {os.path.realpath(f) for f in folders}
    found = []
    for text in texts:
        for path in paths:
            at = text.find(path)
            if at >= 0:
                found.append(text[max(0, at - CONTEXT):at + len(path) + CONTEXT])
    return found
