"""Visitor text is data (explorer/text.py): whatever a stranger writes is shown as its own characters."""
import re

import pytest
from streamlit.testing.v1 import AppTest

from explorer.text import literal

PUNCT = r"[!-/:-@\[-`{-~]"             # CommonMark: a backslash before any of these shows the character
SIGNIFICANT = "\\`*_[]!<>#|~$:&@{}=+"      # characters that can start markup, HTML, an autolink or a directive
HOSTILE = [
    "**Your session expired.** [Log in again](https://evil.example/login)",
    "![x](https://evil.example/pixel.png)",
    "_emphasis_ and *more* and ~~struck~~",
    "<img src=x onerror=alert(1)><script>alert(2)</script><a href='https://evil.example'>hi</a>",
    "`code` and ``double `tick` spans`` and ```fence",
    "www.evil.example and https://evil.example and mail@evil.example",
    ":red[coloured] :material/warning: $x^2$ # heading\n> quote\n- item",
    "back\\slash \\[escaped\\]",
    "- a list item",
    "12. a numbered one",
]


def shown(markdown: str) -> str:
    """The text CommonMark displays for markdown made only of literal text and backslash escapes (the
    zero-width spaces that keep autolinks from forming are invisible)."""
    return re.sub(r"\\(" + PUNCT + ")", r"\1", markdown).replace("\u200b", "")


def unescaped_punctuation(markdown: str) -> list[str]:
    """Markup characters that are not part of a backslash escape: where markdown, HTML or an autolink could start."""
    rest = re.sub(r"\\" + PUNCT, "", markdown)
    bare = [c for c in rest if c in SIGNIFICANT]
    if re.search(r"(?i)www\.|https?:/|@\w", rest.replace("\\", "")) or re.match(r"\s*(-|\d+[.)])", markdown):
        bare.append("autolink or list")
    return bare


@pytest.mark.parametrize("text", HOSTILE)
def test_literal_text_displays_its_own_characters_and_forms_no_markup(text):
    out = literal(text)
    assert "\n" not in out
    assert shown(out) == text.replace("\n", " ")
    assert unescaped_punctuation(out) == []


def _page(text):
    import streamlit as st

    from explorer.text import literal as lit
    st.warning(f"Part of this link could not be used: {lit(text)}.")
    st.caption(lit(text))
    st.markdown(lit(text))
    st.info(lit(text))


@pytest.mark.parametrize("text", HOSTILE[:5])
def test_streamlit_elements_receive_the_text_escaped(text):
    at = AppTest.from_function(_page, args=(text,)).run()
    assert not at.exception
    values = [at.warning[0].value, at.caption[0].value, at.markdown[0].value, at.info[0].value]
    for v in values:
        assert text.replace("\n", " ") in shown(v)
        assert not re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)\]\(|(?<!\\)<[a-z]|(?<!\\)\*\*", v), v


def test_numbers_in_messages_are_whole_numbers_written_as_such():
    from explorer.text import number

    assert number(2**31 - 1) == "2,147,483,647" and number(2147483647.0) == "2,147,483,647"
    assert number(-4.0) == "-4" and number(0.5) == "0.5" and number(0) == "0"
