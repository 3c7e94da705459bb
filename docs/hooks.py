"""MkDocs hooks of the fnbackprop site.

- In the API reference, a docstring's indented block of equations (every line has an "=", nothing
  that reads as code) is typeset: the docstrings write plain-text math, which MathJax reads as AsciiMath.
- In the tutorials, paragraphs are marked for MathJax (which reads only marked elements, see
  docs/javascripts/mathjax-config.js).
- MathJax itself is copied into the site from the django-static-mathjax package: the site needs no
  network to show its equations.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

CODE_BLOCK = re.compile(r'<div class="highlight"><pre><span></span><code>(.*?)</code></pre></div>', re.S)
NOT_MATH = ("fnbackprop ", "import ", "python", "->", "#", ">>>", ".py", "--", "def ", "return ", "&quot;", "print(")
MATHJAX_PARTS = ("tex-chtml.js", "input/asciimath.js", "output/chtml/fonts/woff-v2")


def asciimath(line: str) -> str:
    """A docstring's plain-text equation as AsciiMath: x-hats, multi-letter subscripts, (.) for odot; a
    comment after two spaces, in parentheses, stays text."""
    comment = re.match(r"(.*?\S)\s{2,}(\(.*\))\s*$", line)
    if comment:
        return asciimath(comment.group(1)) + ' quad "' + comment.group(2).replace('"', "'") + '"'
    line = re.sub(r"\b([A-Za-z])hat\b", r"hat \1", line)
    line = re.sub(r"_\{([^}]*)\}", r"_(\1)", line)
    line = re.sub(r"\^\{([^}]*)\}", r"^(\1)", line)
    line = re.sub(r"_([A-Za-z]{2,})", r"_(\1)", line)
    line = line.replace("(.)", " odot ").replace("eps", "epsilon")
    return line


def _typeset(match: re.Match) -> str:
    text = re.sub(r"<[^>]+>", "", match.group(1))  # the highlighter's spans
    lines = [line.strip() for line in html.unescape(text).splitlines() if line.strip()]
    if not lines or not all("=" in line for line in lines) or any(word in line for line in lines for word in NOT_MATH):
        return match.group(0)
    shown = "<br>".join(f"`{html.escape(asciimath(line))}`" for line in lines)
    return f'<div class="arithmatex docstring-math">{shown}</div>'


FIRST_PARAGRAPH = re.compile(r'(<div class="doc doc-contents[^"]*">\s*<p>)(.*?)(</p>)', re.S)
#: words of five letters or more that may stand in an equation; any other reads as prose
MATH_WORDS = {"sqrt", "sigma", "gamma", "delta", "lambda", "alpha", "theta", "softmax", "sigmoid", "softplus"}


def _leading_equation(match: re.Match) -> str:
    """A docstring whose summary opens with an equation ("dW = dZ^T A_prev, db = sum_i dZ_i  (Ng: ...)"):
    the equation, up to the first ";", " (" or ". ", is typeset inline; the rest stays text."""
    start, text, end = match.groups()
    head = re.split(r";|\s\(|\.\s|\.$", text, maxsplit=1)[0]
    words = {w.lower() for w in re.findall(r"(?<![\w^])[A-Za-z]{5,}(?![\w(])", re.sub(r"\w*[_^]\w*", "", head))}
    if not re.match(r"^[A-Za-z][\w\[\]'^]* = ", text) or "<" in head or words - MATH_WORDS:
        return match.group(0)
    shown = f'<span class="arithmatex">`{html.escape(asciimath(html.unescape(head)))}`</span>'
    return start + shown + text[len(head):] + end


def on_page_content(content: str, page, config, files) -> str:
    if page.file.src_uri.startswith("reference/"):
        return FIRST_PARAGRAPH.sub(_leading_equation, CODE_BLOCK.sub(_typeset, content))
    if page.file.src_uri.startswith("tutorials/"):  # the notebooks' paragraphs hold $ $ and $$ $$: let MathJax in
        return content.replace("<p>", '<p class="arithmatex">').replace("<li>", '<li class="arithmatex">')
    return content


def on_post_build(config) -> None:
    import mathjax  # django-static-mathjax: MathJax 3's files, no Django needed to read them

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = Path(config["site_dir"]) / "javascripts" / "mathjax"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
