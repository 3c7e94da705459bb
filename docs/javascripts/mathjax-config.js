// MathJax 3: TeX between \( \) and \[ \] (pymdownx.arithmatex) or $ $ and $$ $$ (the tutorials), AsciiMath for the plain-text equations of
// the docstrings (docs/hooks.py marks them), only inside elements of class "arithmatex" and the
// tutorials' markdown cells (code and outputs, in pre and code, are never typeset).
window.MathJax = {
  loader: { load: ["input/asciimath"] },
  tex: { inlineMath: [["\\(", "\\)"], ["$", "$"]], displayMath: [["\\[", "\\]"], ["$$", "$$"]], processEscapes: true,
         processEnvironments: true },
  asciimath: { delimiters: [["`", "`"]], displaystyle: true },
  // the tutorials' markdown cells sit in nested jp-* elements, each of which must be let through
  options: { ignoreHtmlClass: ".*|",
             processHtmlClass: "arithmatex|jupyter-wrapper|jp-Notebook|jp-Cell|jp-Cell-inputWrapper|jp-InputArea|jp-RenderedMarkdown" },
};
document$.subscribe(() => {  // mkdocs-material's instant navigation: typeset each new page
  if (window.MathJax && MathJax.typesetPromise) { MathJax.typesetClear(); MathJax.typesetPromise(); }
});
