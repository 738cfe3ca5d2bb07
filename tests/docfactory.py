"""Build test documents in memory: PDF (multi-page, blank, encrypted, corrupt), DOCX, a zip that
is not a DOCX, HTML with scripts and styles, markdown, and long varied prose for chunking."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence


def pdf_bytes(pages: Sequence[str]) -> bytes:
    """A PDF with one page per entry; each page holds its text (Latin-1 core font)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.set_xy(10, 10)
            pdf.multi_cell(w=190, h=7, text=text)
    return bytes(pdf.output())


def blank_pdf_bytes(n_pages: int = 1) -> bytes:
    """A valid PDF whose pages carry no text (like a scanned page without OCR)."""
    return pdf_bytes([""] * n_pages)


def encrypted_pdf_bytes(
    pages: Sequence[str], user: str = "secret", owner: str = "owner", R: int | None = None
) -> bytes:
    """A PDF protected with a user password through pikepdf.

    ``R`` is the security handler revision; None keeps pikepdf's default (6, AES-256)."""
    import pikepdf

    encryption = (
        pikepdf.Encryption(owner=owner, user=user)
        if R is None
        else pikepdf.Encryption(owner=owner, user=user, R=R)
    )
    src = pikepdf.open(io.BytesIO(pdf_bytes(pages)))
    out = io.BytesIO()
    src.save(out, encryption=encryption)
    src.close()
    return out.getvalue()


def corrupt_pdf_bytes() -> bytes:
    """Starts like a PDF, then nothing but garbage."""
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage


def docx_bytes(paragraphs: Sequence[str]) -> bytes:
    """A Word document with one paragraph per entry."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_not_docx_bytes() -> bytes:
    """A valid zip archive without word/document.xml."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("readme.txt", "just a zip archive")
        zf.writestr("data/numbers.csv", "1,2,3\n")
    return out.getvalue()


SCRIPT_MARKER = "SCRIPTMARKER_doNotIndex"
STYLE_MARKER = "STYLEMARKER_doNotIndex"
NOSCRIPT_MARKER = "NOSCRIPTMARKER_doNotIndex"


def html_bytes(title: str, paragraphs: Sequence[str]) -> bytes:
    """An HTML page whose head and body hold script/style/noscript content besides the text."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    page = f"""<!DOCTYPE html>
<html>
<head>
<title>{title}</title>
<style>.{STYLE_MARKER} {{ color: red; }}</style>
<script>var x = "{SCRIPT_MARKER}";</script>
</head>
<body>
<h1>{title}</h1>
<script type="text/javascript">console.log("{SCRIPT_MARKER}");</script>
{body}
<style>p::after {{ content: "{STYLE_MARKER}"; }}</style>
<noscript>{NOSCRIPT_MARKER}</noscript>
</body>
</html>
"""
    return page.encode("utf-8")


def markdown_text() -> str:
    return (
        "# Docent handbook\n"
        "\n"
        "Docent answers questions **from your documents** and cites them.\n"
        "\n"
        "## Setup\n"
        "\n"
        "- Install the package\n"
        "- Run `docent serve`\n"
        "\n"
        "```python\n"
        "print('hello')\n"
        "```\n"
        "\n"
        "| column | value |\n"
        "|--------|-------|\n"
        "| a      | 1     |\n"
        "\n"
        "Ünïcödé, emoji 🚀 and a [link](https://example.com).\n"
    )


_SUBJECTS = [
    "The archivist",
    "A cautious engineer",
    "The river pilot",
    "Our tenant",
    "The old library",
    "Each reviewer",
    "The lighthouse keeper",
    "A patient gardener",
    "The ferry company",
    "The committee",
    "A retired sailor",
    "The night shift",
]
_VERBS = [
    "catalogued",
    "inspected",
    "questioned",
    "repaired",
    "described",
    "measured",
    "forgot",
    "rebuilt",
    "translated",
    "summarised",
    "audited",
    "photographed",
]
_OBJECTS = [
    "the brass instruments",
    "every handwritten ledger",
    "the northern bridge",
    "a box of unlabelled maps",
    "the tide tables for March",
    "three broken clocks",
    "the signal lamps",
    "an unfinished report",
    "the pottery shards",
    "the copper roof",
]
_TAILS = [
    "before the storm arrived",
    "while the harbour slept",
    "with remarkable care",
    "although nobody had asked",
    "for the second time that year",
    "without a single complaint",
    "as the bells rang noon",
    "in the damp cellar",
    "despite the fog",
    "at the request of the mayor",
]


def long_text(n_words: int = 4000, seed: int = 1) -> str:
    """Prose of about ``n_words`` words: varied sentence lengths, paragraphs, some questions."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    words = 0
    while words < n_words:
        sentences = []
        for _ in range(rng.randint(2, 7)):
            parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
            for _ in range(rng.randint(0, 3)):
                parts.append(rng.choice(_TAILS))
            sentence = " ".join(parts)
            if rng.random() < 0.15:
                sentence = "Why had " + sentence[0].lower() + sentence[1:] + "?"
            else:
                sentence += "."
            sentences.append(sentence)
            words += len(sentence.split())
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)
