"""A griffe extension for the API reference: the docstrings write plain-text math (`g[L](Z[L])`,
`dy * g'(z)`), which Markdown would read as links; a `](` is written with an HTML entity, so it stays
text. (The equation blocks are typeset by docs/hooks.py.)"""

from __future__ import annotations

import griffe


class PlainTextMath(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = obj.docstring.value.replace("](", "]&#40;")
