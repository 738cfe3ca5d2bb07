"""ingest.parse: every supported format turns into the expected text, PDF page offsets are right,
and every way a file can be wrong raises an InputError that names the file."""

from __future__ import annotations

import pytest

from app.errors import (
    EmptyDocument,
    EncryptedDocument,
    InputError,
    UnreadableDocument,
    UnsupportedType,
)
from ingest.parse import PAGE_SEPARATOR, ParsedText, kind_for, parse_bytes
from tests import docfactory as df

PAGES = [
    "Alpha page one talks about lighthouses and the Fresnel lens.",
    "Bravo page two describes ferries crossing the northern harbour.",
    "Charlie page three lists three broken clocks in the cellar.",
    "Delta page four summarises the tide tables for March.",
]


def _norm(s: str) -> str:
    return " ".join(s.split())


# --- PDF ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed_pdf() -> ParsedText:
    kind, parsed = parse_bytes("report.pdf", df.pdf_bytes(PAGES))
    assert kind == "pdf"
    return parsed


def test_pdf_text_holds_every_page_in_order(parsed_pdf: ParsedText) -> None:
    positions = [parsed_pdf.text.find(p) for p in PAGES]
    assert all(pos >= 0 for pos in positions), parsed_pdf.text
    assert positions == sorted(positions)
    assert len(parsed_pdf.page_starts) == len(PAGES)


def test_pdf_page_starts_point_at_each_page(parsed_pdf: ParsedText) -> None:
    text, starts = parsed_pdf.text, parsed_pdf.page_starts
    assert starts[0] == 0
    assert starts == sorted(starts)
    for k, page_text in enumerate(PAGES, start=1):
        assert text[starts[k - 1] :].startswith(page_text), (k, text[starts[k - 1] :][:80])
        if k > 1:
            # the previous page ends with the separator right before this page
            assert text[starts[k - 1] - len(PAGE_SEPARATOR) : starts[k - 1]] == PAGE_SEPARATOR


def test_pdf_page_at_gives_one_based_page_for_every_character(parsed_pdf: ParsedText) -> None:
    for k, page_text in enumerate(PAGES, start=1):
        start = parsed_pdf.text.find(page_text)
        for offset in (start, start + len(page_text) // 2, start + len(page_text) - 1):
            assert parsed_pdf.page_at(offset) == k, (k, offset)
    assert parsed_pdf.page_at(0) == 1
    assert parsed_pdf.page_at(len(parsed_pdf.text) - 1) == len(PAGES)


def test_pdf_blank_page_in_the_middle_keeps_page_numbers() -> None:
    pages = ["First page words.", "", "Third page words.", "Fourth page words."]
    _, parsed = parse_bytes("gaps.pdf", df.pdf_bytes(pages))
    assert len(parsed.page_starts) == 4
    assert parsed.page_at(parsed.text.find("First")) == 1
    assert parsed.page_at(parsed.text.find("Third")) == 3
    assert parsed.page_at(parsed.text.find("Fourth")) == 4


def test_pdf_long_wrapped_page() -> None:
    long_page = " ".join(f"sentence{i} about the harbour." for i in range(120))
    _, parsed = parse_bytes("long.pdf", df.pdf_bytes(["Cover page.", long_page, "Back page."]))
    assert _norm(long_page) in _norm(parsed.text)
    assert parsed.page_at(parsed.text.find("sentence0 ")) == 2
    assert parsed.page_at(parsed.text.find("sentence119")) == 2
    assert parsed.page_at(parsed.text.find("Back page.")) == 3


def test_page_at_without_pages_is_none() -> None:
    assert ParsedText("plain").page_at(0) is None
    assert ParsedText("a\n\nb", [0, 3]).page_at(2) == 1
    assert ParsedText("a\n\nb", [0, 3]).page_at(3) == 2


# --- DOCX, HTML, markdown, text ----------------------------------------------------------------


def test_docx_paragraphs() -> None:
    paragraphs = [
        "Quarterly report for the ferry company.",
        "Revenue rose in spring; costs fell — ünïcödé survives.",
        "Final paragraph with the conclusion.",
    ]
    kind, parsed = parse_bytes("report.docx", df.docx_bytes(paragraphs))
    assert kind == "docx"
    assert parsed.page_starts == []
    positions = [parsed.text.find(p) for p in paragraphs]
    assert all(p >= 0 for p in positions), parsed.text
    assert positions == sorted(positions)
    assert parsed.text == parsed.text.strip()


def test_html_drops_script_style_and_noscript() -> None:
    paragraphs = ["The archivist catalogued the maps.", "Tides ebb &amp; flow twice daily."]
    kind, parsed = parse_bytes("page.html", df.html_bytes("Harbour notes", paragraphs))
    assert kind == "html"
    assert "Harbour notes" in parsed.text
    assert "The archivist catalogued the maps." in parsed.text
    assert "Tides ebb & flow twice daily." in parsed.text  # entities decoded
    for marker in (df.SCRIPT_MARKER, df.STYLE_MARKER, df.NOSCRIPT_MARKER):
        assert marker not in parsed.text
    for junk in ("console.log", "color: red", "<p>", "</p>", "<script"):
        assert junk not in parsed.text


def test_html_without_body_tag() -> None:
    data = b"<p>Fragment without a body.</p><script>var SCRIPTX = 1;</script><style>b{}</style>"
    kind, parsed = parse_bytes("fragment.htm", data)
    assert kind == "html"
    assert parsed.text == "Fragment without a body."


def test_markdown_kept_verbatim() -> None:
    source = df.markdown_text()
    kind, parsed = parse_bytes("handbook.md", source.encode("utf-8"))
    assert kind == "markdown"
    assert parsed.text == source
    assert parsed.page_starts == []
    # offsets into the parsed text are offsets into the source
    i = source.index("docent serve")
    assert parsed.text[i : i + len("docent serve")] == "docent serve"


@pytest.mark.parametrize("name", ["notes.txt", "notes.text", "notes.markdown", "NOTES.TXT"])
def test_plain_text_kept_verbatim(name: str) -> None:
    source = "  Leading spaces\r\nCRLF line\r\n\r\nünïcödé 日本語 🚀\tTab\n\n\ntrailing  \n"
    _, parsed = parse_bytes(name, source.encode("utf-8"))
    assert parsed.text == source


def test_utf8_bom_is_stripped() -> None:
    source = "Bom-prefixed text.\nSecond line.\n"
    _, parsed = parse_bytes("bom.txt", source.encode("utf-8-sig"))
    assert parsed.text == source


def test_utf16_text_is_decoded() -> None:
    """parse._decode accepts UTF-16, so a UTF-16 file (with BOM, as Windows Notepad writes it)
    must decode to its text rather than be rejected as binary."""
    source = "Windows notepad file.\r\nSecond line with ünïcödé.\r\n"
    _, parsed = parse_bytes("windows.txt", source.encode("utf-16"))
    assert parsed.text == source


@pytest.mark.parametrize(
    "source",
    [
        "Café crème, naïve façade.",  # 25 bytes in latin-1: odd length
        "Café crème, naïve façades.",  # 26 bytes: even length
        "Grüße aus Köln, Straße 12.\nÀ bientôt.\n",
    ],
)
def test_latin1_text_is_rejected_or_decoded_correctly(source: str) -> None:
    """Documented behaviour: text that is not UTF-8/UTF-16 raises UnreadableDocument. It must
    never be turned into different (mojibake) text."""
    data = source.encode("latin-1")
    try:
        _, parsed = parse_bytes("legacy.txt", data)
    except UnreadableDocument as exc:
        assert "legacy.txt" in exc.message
        assert "UTF-8" in exc.message
    else:
        assert parsed.text == source, f"latin-1 bytes decoded as {parsed.text!r}"


# --- errors ------------------------------------------------------------------------------------


def _error_cases() -> list[tuple[str, bytes, type[InputError]]]:
    return [
        ("empty.txt", b"", EmptyDocument),
        ("empty.pdf", b"", EmptyDocument),
        ("whitespace.txt", b"  \n\t\r\n  ", EmptyDocument),
        ("only-script.html", b"<html><body><script>x()</script></body></html>", EmptyDocument),
        ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00", UnsupportedType),
        ("no-extension", b"hello", UnsupportedType),
        ("fake.pdf", b"this is plain text, not a PDF at all", UnsupportedType),
        ("zip-named.pdf", df.zip_not_docx_bytes(), UnsupportedType),
        ("fake.docx", b"plain text pretending to be Word", UnsupportedType),
        ("binary.txt", b"hello\x00\x01\x02\x03world", UnsupportedType),
        ("pdf-named.md", df.pdf_bytes(["x"]), UnsupportedType),
        ("zip-named.html", df.zip_not_docx_bytes(), UnsupportedType),
        ("archive.docx", df.zip_not_docx_bytes(), UnsupportedType),
        ("broken-zip.docx", b"PK\x03\x04" + b"\x00garbage" * 50, UnreadableDocument),
        ("corrupt.pdf", df.corrupt_pdf_bytes(), UnreadableDocument),
        ("scan.pdf", df.blank_pdf_bytes(2), EmptyDocument),
        ("odd-latin1.txt", "naïve café".encode("latin-1") + b"!", UnreadableDocument),
    ]


@pytest.mark.parametrize(
    ("name", "data", "error"), _error_cases(), ids=[c[0] for c in _error_cases()]
)
def test_bad_input_raises_error_naming_the_file(
    name: str, data: bytes, error: type[InputError]
) -> None:
    with pytest.raises(error) as info:
        parse_bytes(name, data)
    assert type(info.value) is error
    assert name in info.value.message
    assert info.value.audience == "user"


def test_blank_pdf_message_hints_at_ocr() -> None:
    with pytest.raises(EmptyDocument, match="scanned"):
        parse_bytes("scan.pdf", df.blank_pdf_bytes())


def test_unknown_extension_lists_supported_types() -> None:
    with pytest.raises(UnsupportedType) as info:
        parse_bytes("virus.exe", b"MZ\x90\x00")
    for ext in (".pdf", ".docx", ".html", ".md", ".txt"):
        assert ext in info.value.message


@pytest.mark.parametrize("revision", [4, 6])
def test_encrypted_pdf_raises_encrypted_document(revision: int) -> None:
    """R=6 (AES-256) is pikepdf's default and what current PDF tools write."""
    data = df.encrypted_pdf_bytes(PAGES[:2], user="secret", owner="owner", R=revision)
    with pytest.raises(EncryptedDocument) as info:
        parse_bytes("locked.pdf", data)
    assert "locked.pdf" in info.value.message


def test_encrypted_pdf_default_pikepdf_encryption() -> None:
    """pikepdf.Encryption(owner=..., user=...) with its defaults."""
    data = df.encrypted_pdf_bytes(PAGES[:1], user="pw", owner="owner-pw")
    with pytest.raises(EncryptedDocument) as info:
        parse_bytes("protected.pdf", data)
    assert "protected.pdf" in info.value.message


@pytest.mark.parametrize("revision", [4, 6])
def test_pdf_with_only_an_owner_password_is_read(revision: int) -> None:
    """An owner password only restricts editing; the text opens with an empty user password."""
    data = df.encrypted_pdf_bytes(PAGES[:2], user="", owner="owner", R=revision)
    kind, parsed = parse_bytes("restricted.pdf", data)
    assert kind == "pdf"
    assert PAGES[0] in parsed.text and PAGES[1] in parsed.text
    assert parsed.page_at(parsed.text.find(PAGES[1])) == 2


def test_kind_for_uses_extension_and_sniffs_content() -> None:
    assert kind_for("a.PDF", b"%PDF-1.4") == "pdf"
    assert kind_for("a.docx", b"PK\x03\x04") == "docx"
    assert kind_for("a.htm", b"<html>") == "html"
    assert kind_for("a.markdown", b"# title") == "markdown"
    assert kind_for("dir.v2/a.txt", b"hello") == "text"
    with pytest.raises(UnsupportedType):
        kind_for("a.pdf.exe", b"%PDF-1.4")
