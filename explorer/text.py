"""Visitor text is data: one helper that shows any string literally in Streamlit's markdown.

A link's names and values, an upload's file name, a Hub id or a model card's words come from a
stranger. Shown through st.markdown, st.warning, st.caption ..., such text could otherwise draw
a link to another site, bold text in the app's own voice, or an image the visitor's browser
fetches from elsewhere. ``literal`` makes it plain text by backslash-escaping (CommonMark shows
``\\X`` as X) every character that can start markdown, HTML, an autolink, an emoji or icon
short code, a colour directive or LaTeX; line breaks become spaces, and a leading list or
heading marker is escaped too. Everyday punctuation (``.-,/()'"``) stays as it is, so a file
name or a repo id reads as usual in the page's source and in tests.

Escapes cannot stop GitHub-style autolinks (``https://...``, ``www.x``, ``a@b.c``): Streamlit's
markdown finds them in the text after the escapes are resolved. A zero-width space (``ZWSP``) is
put inside each trigger (``:\u200b//``, ``www\u200b.``, ``@\u200b``), which the reader does not see
and which keeps the text from becoming a link (tests/test_browser_links.py checks in a browser).

    st.warning(f"The link's {literal(name)} is not a setting of this page.")
"""
from __future__ import annotations

import re

_SIGNIFICANT = re.compile(r"([\\`*_\[\]!<>#|~$:&@{}=+])")
ZWSP = "\u200b"
_AUTOLINK = re.compile(r"(?i)(://|(?<=www)\.|@)")     # where an autolink literal would start
_LIST = re.compile(r"^(\s*)(-|\d+(?=[.)]))")         # "- x", "1. x" at the start: a list
_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c]+")


def _defuse(m: re.Match) -> str:
    t = m.group(1)
    return ":" + ZWSP + "//" if t == "://" else ZWSP + "." if t == "." else "@" + ZWSP


def literal(text: object) -> str:
    """``text`` as markdown that displays exactly its characters (line breaks as spaces)."""
    out = _SIGNIFICANT.sub(r"\\\1", _AUTOLINK.sub(_defuse, _BREAKS.sub(" ", str(text))))
    m = _LIST.match(out)
    if m and m.group(2) == "-":
        return f"{m.group(1)}\\-{out[m.end():]}"
    if m:                                            # escape the list number's "." or ")"
        return f"{out[:m.end()]}\\{out[m.end():]}"
    return out


def number(v) -> str:
    """A number in a message: a whole number as one, with thousands separators (2,147,483,647, never
    2.14748e+09); any other number in its shortest form (0.5, -4)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    return f"{v:g}"
