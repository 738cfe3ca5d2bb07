"""Answers as HTML for the web chat.

Markdown is rendered by markdown-it-py (CommonMark; raw HTML off, so any tag in an answer is
shown as text; reference definitions off, so ``[1]: javascript:...`` cannot turn a citation into
a link) and the result is sanitised by nh3 (Ammonia): only http, https and mailto links survive,
with rel="noopener noreferrer nofollow", and images are never loaded: they become links.

Two things Docent adds to the Markdown, as elements the sanitiser is told to keep:

- a citation marker ``[n]`` that points at one of the answer's sources becomes a link to it;
- after each sentence the grounding checker judged, a mark with its verdict, explained in its
  title and label (hover, focus, screen readers).

While an answer streams, ``render`` events carry the HTML of its settled part (the text up to the
last paragraph break outside a code block), so the page shows formatted text as it arrives and
only the paragraph being written as plain text; ``done`` carries the HTML of the whole answer.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from app.models import AnswerEvent

_PRIVATE = re.compile("[\ue000-\uf8ff]")
_SAFE_HREF = re.compile(r"(https?://|mailto:|#source-\d{1,3}$)", re.I)
_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    "span", "sup",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title", "class", "data-n"},
    "span": {"class", "title", "aria-label", "tabindex", "data-i", "role"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}
VERDICT_WORDS = {
    "supported": "Supported by the sources",
    "partial": "Partly supported by the sources",
    "unsupported": "Not found in the sources",
}


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("reference")
    md.core.ruler.push("docent_marks", _docent_marks)
    md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    alt = html.escape(token.content or "image")
    return f'<a href="{src}">{alt}</a>'


def _docent_marks(state: StateCore) -> None:
    """Citation markers and grounding marks inside text (never inside code or link targets)."""
    sources: int = state.env.get("sources", 0)
    marks: dict[int, dict[str, Any]] = state.env.get("marks", {})
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        for token in block.children:
            if token.type != "text":
                children.append(token)
                continue
            children.extend(_split_text(token.content, sources, marks))
        block.children = children


def _split_text(text: str, sources: int, marks: dict[int, dict[str, Any]]) -> list[Token]:
    out: list[Token] = []
    pattern = re.compile(r"\[(\d{1,3})\]|\ue000(\d+)\ue001")
    pos = 0
    for m in pattern.finditer(text):
        if m.group(1) is not None and not 1 <= int(m.group(1)) <= sources:
            continue
        if m.start() > pos:
            out.append(_text(text[pos : m.start()]))
        if m.group(1) is not None:
            n = int(m.group(1))
            out.append(
                _raw(
                    f'<a class="cite" href="#source-{n}" data-n="{n}" title="Source {n}">[{n}]</a>'
                )
            )
        else:
            out.append(_raw(_mark(int(m.group(2)), marks.get(int(m.group(2))))))
        pos = m.end()
    if pos < len(text):
        out.append(_text(text[pos:]))
    return out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _raw(content: str) -> Token:
    token = Token("html_inline", "", 0)
    token.content = content
    return token


def _mark(index: int, sentence: dict[str, Any] | None) -> str:
    if sentence is None:
        return ""
    verdict = str(sentence.get("verdict", ""))
    words = VERDICT_WORDS.get(verdict, verdict)
    source = sentence.get("source")
    why = "; ".join(str(r) for r in sentence.get("reasons") or [])
    label = f"{words}" + (f" (source {source})" if source and verdict != "unsupported" else "")
    if why and verdict != "supported":
        label += f": {why}"
    label = html.escape(label, quote=True)
    symbol = {"supported": "✓", "partial": "~", "unsupported": "?"}.get(verdict, "·")
    return (
        f'<span class="mark mark-{html.escape(verdict, quote=True)}" role="img" tabindex="0" '
        f'data-i="{index}" title="{label}" aria-label="{label}">{symbol}</span>'
    )


_MD = _markdown()


def render_answer(
    text: str, sources: int, grounding: Sequence[dict[str, Any]] | None = None
) -> str:
    """Sanitised HTML of an answer; ``sources`` is how many sources its [n] may cite;
    ``grounding`` the sentences of the ``grounding`` event, marked where they end."""
    text = _PRIVATE.sub("", text)
    marks: dict[int, dict[str, Any]] = {}
    if grounding:
        text, marks = _place_marks(text, grounding)
    rendered = _MD.render(text, {"sources": sources, "marks": marks})
    clean = nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        attribute_filter=_only_safe_links,
    )
    return _PRIVATE.sub("", clean)


def _only_safe_links(tag: str, attribute: str, value: str) -> str | None:
    """Relative and protocol-relative links (``//evil.example``) go too: an answer links out
    only to absolute http(s) and mailto addresses, and in-page to its sources."""
    if attribute == "href":
        return value if _SAFE_HREF.match(value) else None
    return value


def _place_marks(
    text: str, grounding: Sequence[dict[str, Any]]
) -> tuple[str, dict[int, dict[str, Any]]]:
    """Put a placeholder after each judged sentence, found by its text in order (offsets may
    refer to a cleaned copy of the answer)."""
    marks: dict[int, dict[str, Any]] = {}
    inserts: list[tuple[int, int]] = []
    cursor = 0
    for i, sentence in enumerate(grounding):
        if not sentence.get("claim", True):
            continue
        needle = str(sentence.get("text", "")).strip()
        found = text.find(needle, cursor) if needle else -1
        if found < 0:
            continue
        end = found + len(needle)
        # After a citation marker that closes the sentence: "... weeks [1]." -> mark after.
        trailing = re.match(r"(\s*\[\d{1,3}\])*[.!?]?", text[end:])
        end += trailing.end() if trailing else 0
        marks[i] = dict(sentence)
        inserts.append((end, i))
        cursor = end
    for end, i in sorted(inserts, reverse=True):
        text = f"{text[:end]}\ue000{i}\ue001{text[end:]}"
    return text, marks


def settled(text: str) -> int:
    """Length of the part of a streaming answer whose rendering cannot change any more: up to
    the last blank line outside a fenced code block."""
    cut = 0
    fenced = False
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        pos += len(line)
        if not fenced and stripped == "" and pos < len(text):
            cut = pos
    return cut


async def with_html(
    source: AsyncGenerator[AnswerEvent, None],
) -> AsyncGenerator[AnswerEvent, None]:
    """The answer's events, plus ``render`` events while it streams and ``html`` in ``done``.
    Closing this closes the answer (and so its upstream request) at once."""
    text, upto, sources = "", 0, 0
    grounding: list[dict[str, Any]] = []
    async with aclosing(source) as events:
        async for event in events:
            if event.event == "sources":
                sources = len(event.data.get("sources") or [])
            elif event.event == "reset":
                text, upto = "", 0
            elif event.event == "grounding":
                grounding = list(event.data.get("sentences") or [])
            elif event.event == "done":
                answer = str(event.data.get("text", ""))
                event.data["html"] = render_answer(answer, sources, grounding)
            yield event
            if event.event == "delta":
                text += str(event.data.get("text", ""))
                # Only what came after the last cut: it ends a line outside any code fence,
                # so the scan can start there (from the start it was quadratic in length).
                cut = upto + settled(text[upto:])
                if cut > upto:
                    upto = cut
                    html_part = render_answer(text[:cut], sources)
                    yield AnswerEvent(event="render", data={"html": html_part, "upto": cut})
