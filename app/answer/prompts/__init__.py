"""Prompt templates: jinja2 files in this folder, named ``<name>-v<version>.<part>.j2``.

A template file is never edited once released: a change is a new version. Every answer
records the version and the sha256 of the exact template text it was built from, so an answer
can be traced to its prompt. Retrieved text goes in as data, inside ``<source>`` tags that a
document cannot close or forge (``neutralise``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.models import ChunkHit

HERE = Path(__file__).parent
ANSWER_VERSION = "answer-v1"
CONDENSE_VERSION = "condense-v1"
JUDGE_VERSION = "judge-v1"

_TAG = re.compile(r"</?\s*source\b[^>]*>", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Source text with anything shaped like a <source> tag defused, so a document cannot end
    its own block and pose as the instructions or as another source."""
    return _TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE),
        undefined=StrictUndefined,
        autoescape=False,  # plain-text prompts; titles are escaped with |e where they sit in tags
        keep_trailing_newline=False,
    )
    env.filters["neutralise"] = neutralise
    return env


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    version: str
    sha256: str


@cache
def template_hash(version: str) -> str:
    h = hashlib.sha256()
    for path in sorted(HERE.glob(f"{version}.*j2")) + sorted(HERE.glob(f"{version}.j2")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def answer_prompt(
    question: str,
    sources: list[ChunkHit],
    *,
    strict: bool = False,
    high_risk: bool = False,
    max_sentences: int | None = None,
    version: str = ANSWER_VERSION,
) -> Prompt:
    env = _env()
    system = env.get_template(f"{version}.system.j2").render(
        strict=strict, high_risk=high_risk, max_sentences=max_sentences
    )
    user = env.get_template(f"{version}.user.j2").render(question=question, sources=sources)
    return Prompt(system.strip(), user.strip(), version, template_hash(version))


def condense_prompt(question: str, history: list[tuple[str, str]]) -> Prompt:
    text = _env().get_template(f"{CONDENSE_VERSION}.j2").render(question=question, history=history)
    return Prompt("", text.strip(), CONDENSE_VERSION, template_hash(CONDENSE_VERSION))


def judge_prompt(sentences: list[str], sources: list[ChunkHit]) -> Prompt:
    env = _env()
    system = env.get_template(f"{JUDGE_VERSION}.system.j2").render()
    user = env.get_template(f"{JUDGE_VERSION}.user.j2").render(sentences=sentences, sources=sources)
    return Prompt(system.strip(), user.strip(), JUDGE_VERSION, template_hash(JUDGE_VERSION))
