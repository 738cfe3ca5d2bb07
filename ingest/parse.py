"""Sniff a file's real type and turn it into text through LlamaIndex readers.

The result keeps page boundaries (PDF) as character offsets into one text, so every chunk's
offsets point into exactly the text that was stored.
"""

from __future__ import annotations

import codecs
import io
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import EmptyDocument, EncryptedDocument, UnreadableDocument, UnsupportedType

PAGE_SEPARATOR = "\n\n"

# extension -> kind
EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "markdown": "text/markdown",
    "text": "text/plain",
}
SUPPORTED = ", ".join(sorted(EXTENSIONS))


@dataclass
class ParsedText:
    text: str
    page_starts: list[int] = field(default_factory=list)
    """Offset where each PDF page begins in ``text``; empty for unpaged formats."""

    def segments(self) -> list[tuple[int, int, int | None]]:
        """(start, end, page) spans to chunk separately: each page, or the whole text."""
        if not self.page_starts:
            return [(0, len(self.text), None)]
        ends = [s - len(PAGE_SEPARATOR) for s in self.page_starts[1:]] + [len(self.text)]
        return [
            (start, end, i + 1)
            for i, (start, end) in enumerate(zip(self.page_starts, ends, strict=True))
        ]

    def page_at(self, offset: int) -> int | None:
        if not self.page_starts:
            return None
        page = 0
        for i, start in enumerate(self.page_starts):
            if start <= offset:
                page = i
            else:
                break
        return page + 1


def kind_for(filename: str, head: bytes) -> str:
    """The document kind, from the name and confirmed by the first bytes."""
    ext = Path(filename).suffix.lower()
    kind = EXTENSIONS.get(ext)
    if kind is None:
        raise UnsupportedType(
            f"'{filename}' has a type Docent cannot read. Upload one of: {SUPPORTED}."
        )
    is_pdf = head.startswith(b"%PDF-")
    is_zip = head.startswith(b"PK\x03\x04")
    if kind == "pdf" and not is_pdf:
        raise UnsupportedType(f"'{filename}' is named .pdf but is not a PDF file.")
    if kind == "docx" and not is_zip:
        raise UnsupportedType(f"'{filename}' is named .docx but is not a Word document.")
    utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    binary = is_pdf or is_zip or (b"\x00" in head[:4096] and not utf16)
    if kind in ("html", "markdown", "text") and binary:
        raise UnsupportedType(f"'{filename}' is named {ext} but holds binary data, not text.")
    return kind


def parse_bytes(filename: str, data: bytes) -> tuple[str, ParsedText]:
    """Validate and parse; raises an InputError a person can act on."""
    if not data:
        raise EmptyDocument(f"'{filename}' is empty. Upload a file that contains text.")
    kind = kind_for(filename, data[:8192])
    parsed = _PARSERS[kind](filename, data)
    if not parsed.text.strip():
        hint = " It may be a scanned image; Docent does not run OCR yet." if kind == "pdf" else ""
        raise EmptyDocument(f"No text could be extracted from '{filename}'.{hint}")
    return kind, parsed


@contextmanager
def _with_temp_file(suffix: str, data: bytes) -> Iterator[Path]:
    """LlamaIndex readers take a path; the upload lives in memory until it is accepted."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        yield Path(tmp.name)


def _parse_pdf(filename: str, data: bytes) -> ParsedText:
    import pypdf
    from llama_index.readers.file import PDFReader
    from tenacity import stop_after_attempt

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        # An owner password only restricts editing; the text opens with an empty password.
        encrypted = reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED
    except Exception as exc:
        raise UnreadableDocument(
            f"'{filename}' could not be read as a PDF ({type(exc).__name__}). "
            "It may be damaged; export it again and re-upload."
        ) from exc
    if encrypted:
        raise EncryptedDocument(
            f"'{filename}' is password-protected. Remove the password and upload it again."
        )
    with _with_temp_file(".pdf", data) as tmp:
        try:
            # LlamaIndex's PDFReader retries on failure; call the undecorated function once.
            load_once = PDFReader.load_data.retry_with(stop=stop_after_attempt(1), reraise=True)
            pages = load_once(PDFReader(), tmp)
        except Exception as exc:
            raise UnreadableDocument(
                f"'{filename}' could not be read as a PDF ({type(exc).__name__}). "
                "It may be damaged; export it again and re-upload."
            ) from exc
    parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for page in pages:
        starts.append(offset)
        page_text = page.text or ""
        parts.append(page_text)
        offset += len(page_text) + len(PAGE_SEPARATOR)
    return ParsedText(PAGE_SEPARATOR.join(parts), starts)


def _parse_docx(filename: str, data: bytes) -> ParsedText:
    from llama_index.readers.file import DocxReader

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if "word/document.xml" not in zf.namelist():
                raise UnsupportedType(f"'{filename}' is a zip archive, not a Word document.")
    except zipfile.BadZipFile as exc:
        raise UnreadableDocument(
            f"'{filename}' could not be opened as a Word document. It may be damaged."
        ) from exc
    with _with_temp_file(".docx", data) as tmp:
        try:
            docs = DocxReader().load_data(tmp)
        except Exception as exc:
            raise UnreadableDocument(
                f"'{filename}' could not be read as a Word document ({type(exc).__name__})."
            ) from exc
    return ParsedText("\n".join(d.text for d in docs).strip())


def _decode(filename: str, data: bytes) -> str:
    # UTF-16 only with its byte-order mark: without one, other 8-bit text would "decode".
    encoding = (
        "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        pass
    raise UnreadableDocument(
        f"'{filename}' is not valid UTF-8 text. Save it as UTF-8 and upload it again."
    )


def _parse_html(filename: str, data: bytes) -> ParsedText:
    from bs4 import BeautifulSoup
    from llama_index.readers.file import HTMLTagReader

    # Scripts, styles and templates are not content; drop them before the reader sees the page.
    soup = BeautifulSoup(_decode(filename, data), "html.parser")
    for tag in soup(["script", "style", "template", "noscript"]):
        tag.decompose()
    if soup.body is None:
        return ParsedText(soup.get_text("\n").strip())
    with _with_temp_file(".html", str(soup).encode("utf-8")) as tmp:
        docs = HTMLTagReader(tag="body").load_data(tmp)
    return ParsedText("\n\n".join(d.text for d in docs).strip())


def _parse_plain(filename: str, data: bytes) -> ParsedText:
    from llama_index.readers.file import FlatReader

    text = _decode(filename, data)
    with _with_temp_file(".txt", text.encode("utf-8")) as tmp:
        docs = FlatReader().load_data(tmp)
    return ParsedText("".join(d.text for d in docs))


_PARSERS = {
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "html": _parse_html,
    "markdown": _parse_plain,
    "text": _parse_plain,
}
