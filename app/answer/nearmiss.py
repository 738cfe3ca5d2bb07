"""The semantic cache's near-miss guard, and the exact-match cache key.

Two questions can be worded almost alike, and score as near duplicates with an embedding
model, yet need different answers. ``near_miss`` compares what such questions hinge on and
returns a short reason when a cached answer must not be served, or None when it may be:

- numbers: digits, decimals, percentages, versions (v2, 3.11), written numbers (one, twenty-five,
  two hundred), ordinals (first, 2nd), roman numerals after type/phase/stage..., years, month
  and weekday names, and the unit after a number (14 days vs 14 weeks);
- names: proper nouns, acronyms and brand spellings (Acme, GDPR, iPhone), compared without
  regard to case, and against their spelled-out form (PTO = paid time off);
- negation: not, no, never, without, n't, cannot, none, except, excluding, ... and words
  negated by a prefix (paid / unpaid);
- opposites: before/after, more/less, maximum/minimum, first/last, increase/decrease, ...

It errs towards a reason: a wrong refusal costs one model call, a wrong hit serves the answer
to another question. Written "one", "first" and "second" only count when the other question
has a number of the same kind ("which one", "a second opinion"), and a capitalised first word
only counts as a name against another capitalised first word, since English capitalises it.

``normalise_question`` is the key of the exact-match cache (RELIABILITY.md, R8): case, spacing
and punctuation go; numbers, names (folded to lower case) and negation words stay.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from app.providers.offline import STOPWORDS, content_words


def normalise_question(text: str) -> str:
    """The question as an exact-match key: "What's Acme's refund policy??" and
    "what's acme's refund policy" give the same key; "14 days" and "30 days" do not."""
    t = _prepare(text).casefold()
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 5,000 -> 5000
    t = re.sub(r"[^\w\s'%$€£+#./-]", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # a dot survives only inside a number
    t = re.sub(r"(?<![\w+#])[-'/]|[-'/](?!\w)", " ", t)  # so do - ' / inside a word
    return " ".join(t.split())


def near_miss(
    cached_question: str, new_question: str, *, implicit_names: Iterable[str] = ("Docent",)
) -> str | None:
    """None when the two questions may share an answer, else why they must not.

    ``implicit_names`` may be named in one question and left out of the other: the assistant
    itself ("How does Docent cite answers?" is "How are answers cited?"), and a deployment may
    add the organisation that every question is about.
    """
    a, b = _Question.read(cached_question), _Question.read(new_question)
    implicit = {_key(n) for n in implicit_names}
    return (
        _numbers_differ(a, b)
        or _names_differ(a, b, implicit)
        or _negation_differs(a, b)
        or _opposites_differ(a, b)
    )


# --- vocabulary ----------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _numbered(text: str, start: int = 0, step: int = 1) -> dict[str, int]:
    return {w: start + step * n for n, w in enumerate(text.split())}


def _table(text: str) -> dict[str, str]:
    """'day days | week weeks': each word maps to the first word of its group."""
    return {w: g.split()[0] for g in text.split("|") for w in g.split()}


_SMALL = _numbered(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS = _numbered("twenty thirty forty fifty sixty seventy eighty ninety", 20, 10)
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_ORDINALS = _numbered(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth",
    1,
) | {"thirtieth": 30, "fortieth": 40, "fiftieth": 50, "hundredth": 100}
_SOFT = _words("one first second")  # also "which one", "at first", "a second opinion"
_NOT_ONE_AFTER = _words(
    "which the this that each every any no some another a one new old same other right wrong"
)
_ROMAN = _numbered("I II III IV V VI VII VIII IX X XI XII", 1)
_ROMAN_AFTER = _words(
    "type phase stage grade class level tier part chapter section article schedule title "
    "appendix volume category annex step"
)
_MONTHS = _table(
    "january jan | february feb | march mar | april apr | may | june jun | july jul | "
    "august aug | september sep sept | october oct | november nov | december dec"
)
_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_UNITS = _table(
    "day days | week weeks wk wks | month months | year years yr yrs | hour hours hr hrs h | "
    "minute minutes min mins | second seconds sec secs | night nights | "
    "mg milligram milligrams | mcg µg microgram micrograms | g gram grams | "
    "kg kilogram kilograms kilo kilos | ml millilitre millilitres milliliter milliliters | "
    "kb kilobyte kilobytes | mb megabyte megabytes | gb gigabyte gigabytes | "
    "tb terabyte terabytes | usd dollar dollars | eur euro euros | gbp pound pounds | "
    "degree degrees | am | pm"
)
_CURRENCY = {"$": "usd", "€": "eur", "£": "gbp"}

_NEGATIONS = _words(
    "not no never none nothing nobody nowhere neither nor without cannot except excepting "
    "excluding exclude excludes excluded unless lacks lacking lacked noone"
)
_NT = _words(
    "dont doesnt didnt cant isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt "
    "havent hadnt mustnt neednt aint"
)
# Negated by a prefix and counted even when the other question lacks the base word; other
# prefixed words count only when a question has the base word (install / uninstall).
_PREFIX_NEGATED = _words(
    "unsupported unavailable unpaid unable unsafe unlimited unauthorized unauthorised "
    "unenforceable ineligible invalid illegal unlawful incorrect inactive incomplete unapproved "
    "unsigned unvaccinated untreated unsuccessful unnecessary nonrefundable disallowed "
    "unacceptable insufficient inadequate impossible uninsured unemployed unreadable "
    "unencrypted unmanaged unreimbursable nondeductible"
)
_NEG_PREFIXES = ("non", "un", "in", "im", "il", "ir", "dis")

# Opposites, by axis: (axis, words with sign +1, words with sign -1).
_AXES = (
    (
        "amount",
        "more greater higher larger bigger longer older above exceed exceeds exceeding increase "
        "increases increased increasing raise raises raised raising elevated elevates high",
        "less fewer lower lowers lowered lowering smaller shorter younger below decrease "
        "decreases decreased decreasing reduce reduces reduced reducing reduction decline "
        "declines declined low",
    ),
    (
        "extreme",
        "maximum max most highest largest biggest longest greatest",
        "minimum min least lowest smallest shortest fewest",
    ),
    ("order", "last latest newest final", "first earliest oldest initial"),
    ("time", "after later following post", "before earlier prior previous preceding pre early"),
    (
        "quality",
        "better best improve improves improved improving improvement",
        "worse worst worsen worsens worsened impair impairs impaired",
    ),
    (
        "switch",
        "enable enables enabled enabling activate activates activated",
        "disable disables disabled disabling deactivate deactivates deactivated",
    ),
    (
        "permission",
        "allow allows allowed permit permits permitted",
        "prohibit prohibits prohibited forbid forbidden ban banned",
    ),
    (
        "effect",
        "promote promotes promoted promoting stimulate stimulates stimulated enhance enhances "
        "enhanced induce induces induced",
        "inhibit inhibits inhibited inhibiting suppress suppresses suppressed",
    ),
)
_OPPOSITES = {
    w: (axis, sign)
    for axis, plus, minus in _AXES
    for sign, words in ((1, plus), (-1, minus))
    for w in words.split()
}
_BEFORE_NUMBER = {"over": ("amount", 1), "under": ("amount", -1)}  # "over $500", not "over it"

# Words that begin a question without being names, beyond the generator's stopwords.
_COMMON = (
    STOPWORDS
    | _NEGATIONS
    | _OPPOSITES.keys()
    | _SMALL.keys()
    | _TENS.keys()
    | _ORDINALS.keys()
    | _words(
        "am is are was were be being been do does did done can could should would will shall "
        "may might must have has had what how why when where who whom whose which whether i "
        "i'm i've i'd i'll we you he she they it us them his her him here there this that "
        "these those a an the any all some each every both either another other such in on at "
        "for to from by with about after before during under over between into per via "
        "according regarding concerning since until while within beyond against and or but "
        "so then also just now yes ok okay hi hello hey thanks thank please plz pls sorry dear "
        "quick question help urgent tell explain describe list show give find get let make "
        "check compare summarise summarize define clarify confirm walk remind need want "
        "looking trying anyone someone everyone actually basically generally usually "
        "currently still again really assuming suppose say given new old using note btw fyi re"
    )
)
# Shouted for emphasis ("NOT"), not acronyms.
_EMPHASIS = _NEGATIONS | _words(
    "all only any must do does did what how why is are can ok and or the a an to of in on my "
    "me we you"
)
_LINK = _words("of for and the on to in")  # may be skipped when spelling out an acronym
# A capitalised first word with one of these endings is an ordinary word (Chronic, Mutations).
_WORD_ENDINGS = tuple(
    _words(
        "ing ed ic ics al ous ive ity tion tions sion ment ments ness ly ful less able ible "
        "ance ence ism ist ists ogy ure ship ary ery"
    )
)

_REWRITES = [
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (r"\bwhether or not\b", "whether"),
        (r"\bor not\b", ""),
        (r"\bno(?:t)? (?:more|greater|higher) than\b", "at most"),
        (r"\bno(?:t)? (?:less|fewer|lower) than\b", "at least"),
        (r"\bno later than\b", "by"),
        (r"\bno earlier than\b", "from"),
        (r"\bup to (?=[$€£]?\d)", "at most "),
        (r"\b([ap])\.m\.", r"\1m"),
        (r"\bper cent\b", "percent"),
    )
]


_QUOTES = str.maketrans("\u2018\u2019\u00b4\u201c\u201d", "'''\"\"")


def _prepare(text: str) -> str:
    t = unicodedata.normalize("NFKC", text)
    t = t.translate(_QUOTES)
    for pattern, replacement in _REWRITES:
        t = pattern.sub(replacement, t)
    return t


# --- reading a question ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<time>\d{1,2}:\d{2})"
    r"|(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)"
    r"|(?P<word>[^\W\d_]+(?:['-][^\W\d_]+)*'?)"
    r"|(?P<cur>[$€£])"
    r"|(?P<pct>%)"
    r"|(?P<stop>[.!?:;]|\n)"
)


@dataclass
class _Token:
    kind: str
    text: str  # as written, without a possessive 's
    low: str  # lower case, apostrophes kept
    key: str  # lower case, no apostrophes or hyphens: what names are compared by
    start: int
    end: int
    initial: bool  # first word of a sentence


@dataclass
class _Number:
    group: str  # cardinal | ordinal | date
    value: str
    shown: str
    unit: str | None = None
    unit_shown: str = ""
    soft: bool = False


@dataclass
class _Question:
    text: str
    tokens: list[_Token]
    numbers: list[_Number] = field(default_factory=list)
    used: set[int] = field(default_factory=set)  # tokens that are part of a number

    @classmethod
    def read(cls, text: str) -> _Question:
        prepared = _prepare(text)
        tokens: list[_Token] = []
        initial = True
        for m in _TOKEN.finditer(prepared):
            kind = m.lastgroup or ""
            raw = m.group()
            if kind == "stop":
                initial = True
                continue
            if kind == "word":
                raw = re.sub(r"'s?$", "", raw) or raw
            low = raw.lower()
            tokens.append(_Token(kind, raw, low, _key(raw), m.start(), m.end(), initial))
            initial = False
        q = cls(prepared, tokens)
        q.numbers = _read_numbers(q)
        return q

    def vocabulary(self) -> set[str]:
        """Every word key and hyphen part, with and without a plural s."""
        out: set[str] = set()
        for t in self.tokens:
            if t.kind == "word":
                for w in (t.key, *t.low.replace("'", "").split("-")):
                    out.update((w, w + "s", w[:-1] if w.endswith("s") else w))
        return out

    def parts(self) -> list[tuple[str, int]]:
        """Word parts in order, each with its token index, for spelling out acronyms."""
        return [
            (p, i)
            for i, t in enumerate(self.tokens)
            if t.kind == "word"
            for p in t.low.replace("'", "").split("-")
            if p
        ]


def _key(word: str) -> str:
    return word.lower().replace("'", "").replace("-", "")


def _word(q: _Question, i: int) -> str:
    return q.tokens[i].low if 0 <= i < len(q.tokens) and q.tokens[i].kind == "word" else ""


def _adjacent(q: _Question, i: int, j: int) -> bool:
    return 0 <= i < j < len(q.tokens) and q.tokens[i].end == q.tokens[j].start


def _canonical(number: str) -> str:
    s = number.replace(",", "")
    if s.count(".") == 1:
        whole, frac = s.split(".")
        return str(int(whole)) if frac.strip("0") == "" else f"{int(whole)}.{frac}"
    return str(int(s)) if "." not in s else s


def _scaled(value: str, scale: int) -> str:
    try:
        return _canonical(format((Decimal(value) * scale).normalize(), "f"))
    except InvalidOperation:  # a version such as 1.2.3
        return value


def _read_numbers(q: _Question) -> list[_Number]:
    found: list[_Number] = []
    toks = q.tokens
    i = 0
    while i < len(toks):
        t = toks[i]
        start = i
        number: _Number | None = None
        if t.kind == "time":
            hours, minutes = t.text.split(":")
            value = str(int(hours)) if minutes == "00" else f"{int(hours)}:{minutes}"
            number = _Number("cardinal", value, t.text)
        elif t.kind == "num":
            number = _Number("cardinal", _canonical(t.text), t.text)
            nxt = _word(q, i + 1)
            if nxt in ("st", "nd", "rd", "th") and _adjacent(q, i, i + 1):
                number = _Number("ordinal", number.value, t.text + nxt)
                i += 1
            elif (nxt == "k" and _adjacent(q, i, i + 1)) or nxt in _SCALES:
                number.value = _scaled(number.value, 1000 if nxt == "k" else _SCALES[nxt])
                i += 1
        elif t.kind == "word" and (
            t.low in _SMALL
            or t.low in _TENS
            or t.low in _SCALES
            or all(p in _SMALL or p in _TENS for p in t.low.split("-"))
        ):
            i, number = _read_written(q, i)
        elif t.kind == "word" and (t.low in _ORDINALS or t.low.split("-")[-1] in _ORDINALS):
            *tens, last = t.low.split("-")
            if all(p in _TENS for p in tens) and not (
                t.low == "second" and _word(q, i - 1) in ("a", "per", "one")
            ):
                rank = sum(_TENS[p] for p in tens) + _ORDINALS[last]
                number = _Number("ordinal", str(rank), t.text, soft=t.low in _SOFT)
        elif t.low == "once" and _word(q, i + 1) in ("a", "an", "per", "every", "each", "or"):
            number = _Number("cardinal", "1", t.text)
        elif t.low in ("twice", "thrice"):
            number = _Number("cardinal", "2" if t.low == "twice" else "3", t.text)
        elif t.text in _ROMAN and _word(q, i - 1) in _ROMAN_AFTER:
            number = _Number("cardinal", str(_ROMAN[t.text]), t.text)
        elif t.kind == "word" and (t.key in _WEEKDAYS or t.key.rstrip("s") in _WEEKDAYS):
            number = _Number("date", t.key.rstrip("s") if t.key not in _WEEKDAYS else t.key, t.text)
        elif t.kind == "word" and t.key in _MONTHS:
            near_number = any(0 <= j < len(toks) and toks[j].kind == "num" for j in (i - 1, i + 1))
            if near_number or (t.text[0].isupper() and not t.initial and len(t.key) > 3):
                number = _Number("date", _MONTHS[t.key], t.text)
        if number is None:
            i += 1
            continue
        if number.group == "cardinal":
            i += _attach_unit(q, start, i, number)
        q.used.update(range(start, i + 1))
        found.append(number)
        i += 1
    return found


def _read_written(q: _Question, i: int) -> tuple[int, _Number | None]:
    """A run of number words from token i: "twenty-five", "two hundred and five"."""
    toks = q.tokens
    first = i
    total = current = 0
    words: list[str] = []
    while i < len(toks) and toks[i].kind == "word":
        parts = toks[i].low.split("-")
        if not all(p in _SMALL or p in _TENS or p in _SCALES for p in parts):
            if toks[i].low == "and" and words and _word(q, i + 1) in _SMALL.keys() | _TENS.keys():
                i += 1
                continue
            break
        for p in parts:
            if p in _SCALES:
                if _SCALES[p] == 100:
                    current = max(current, 1) * 100
                else:
                    total += max(current, 1) * _SCALES[p]
                    current = 0
            else:
                current += _SMALL.get(p, 0) + _TENS.get(p, 0)
        words.append(toks[i].text)
        i += 1
    last = i - 1
    if not words:
        return first, None
    if [w.lower() for w in words] == ["one"]:
        before, after = _word(q, first - 1), _word(q, first + 1)
        ends = first + 1 >= len(toks) or toks[first + 1].kind != "word"
        if before in _NOT_ONE_AFTER or ends or after in ("another", "of"):
            return first, None
        return last, _Number("cardinal", "1", words[0], soft=True)
    return last, _Number("cardinal", str(total + current), " ".join(words))


def _attach_unit(q: _Question, start: int, end: int, number: _Number) -> int:
    """Adds the currency sign before or the unit after a number; returns the tokens it took
    after the number (0 or 1)."""
    toks = q.tokens
    if start > 0 and toks[start - 1].kind == "cur":
        number.unit, number.unit_shown = _CURRENCY[toks[start - 1].text], toks[start - 1].text
    nxt = toks[end + 1] if end + 1 < len(toks) else None
    if nxt is None:
        return 0
    if nxt.kind == "pct" or nxt.low in ("percent", "pct"):
        number.value += "%"
        number.shown += "%"
        return 1
    if nxt.kind == "word" and nxt.low in _UNITS and (nxt.low != "h" or _adjacent(q, end, end + 1)):
        number.unit, number.unit_shown = _UNITS[nxt.low], nxt.text
        return 1
    return 0


# --- the checks ------------------------------------------------------------------------------


def _shown(items: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(items)) or "none"


def _numbers_differ(a: _Question, b: _Question) -> str | None:
    only_a: list[str] = []
    only_b: list[str] = []
    for group in ("cardinal", "ordinal", "date"):
        xs = [n for n in a.numbers if n.group == group]
        ys = [n for n in b.numbers if n.group == group]
        if not ys:
            xs = [n for n in xs if not n.soft]
        if not xs:
            ys = [n for n in ys if not n.soft]
        cx, cy = Counter(n.value for n in xs), Counter(n.value for n in ys)
        only_a += [n.shown for n in xs if n.value in cx - cy]
        only_b += [n.shown for n in ys if n.value in cy - cx]
    if only_a or only_b:
        return f"numbers differ: {_shown(only_a)} vs {_shown(only_b)}"
    for x in a.numbers:
        xs = [n for n in a.numbers if n.value == x.value and n.unit]
        ys = [n for n in b.numbers if n.value == x.value and n.unit]
        if xs and ys and not {n.unit for n in xs} & {n.unit for n in ys}:
            return f"numbers differ: {_with_unit(xs[0])} vs {_with_unit(ys[0])}"
    return None


def _with_unit(n: _Number) -> str:
    if n.unit_shown in _CURRENCY:
        return n.unit_shown + n.shown
    return f"{n.shown} {n.unit_shown}"


@dataclass
class _Name:
    index: int
    shown: str
    key: str
    acronym: bool
    confident: bool  # False: a capitalised first word, which may be any word


def _names(q: _Question) -> list[_Name]:
    words = [t for i, t in enumerate(q.tokens) if t.kind == "word" and i not in q.used]
    letters = [t for t in words if len(t.key) > 1]
    if len(letters) >= 3 and sum(t.text.isupper() for t in letters) / len(letters) >= 0.6:
        return []  # SHOUTED: case says nothing
    later = [
        t
        for t in words
        if not t.initial and len(t.key) > 2 and not _is_mixed(t.text) and not t.text.isupper()
    ]
    capitals = sum(t.text[0].isupper() for t in later)
    title_case = capitals >= 2 and capitals / len(later) >= 0.75
    out: list[_Name] = []
    for i, t in enumerate(q.tokens):
        if t.kind != "word" or i in q.used or not (t.text[0].isupper() or _is_mixed(t.text)):
            continue
        text, key = t.text, t.key
        if re.fullmatch(r"[A-Z]{2,}s", text):
            text, key = text[:-1], key[:-1]  # PDFs -> PDF
        if len(text) > 1 and text.isupper():
            if key not in _EMPHASIS:
                out.append(_Name(i, text, key, acronym=True, confident=True))
        elif _is_mixed(text):
            out.append(_Name(i, text, key, acronym=False, confident=True))
        elif t.low not in _COMMON and text != "I":
            confident = not (t.initial or title_case)
            if confident or not key.endswith(_WORD_ENDINGS) or len(key) < 6:
                out.append(_Name(i, text, key, acronym=False, confident=confident))
    return out


def _is_mixed(text: str) -> bool:
    """iPhone, macOS, PostgreSQL, Wi-Fi: capitals after the first letter, and lower case."""
    return any(c.isupper() for c in text[1:]) and any(c.islower() for c in text)


def _spelled_out(acronym: str, parts: list[tuple[str, int]]) -> set[int]:
    """Token indexes of a run of words whose initials spell the acronym."""
    covered: set[int] = set()
    for seq in (parts, [p for p in parts if p[0] not in _LINK]):
        for s in range(len(seq) - len(acronym) + 1):
            run = seq[s : s + len(acronym)]
            if all(p[0][0] == c for p, c in zip(run, acronym, strict=True)):
                covered.update(i for _, i in run)
    return covered


def _unmatched(names: list[_Name], own: _Question, other: _Question) -> list[_Name]:
    vocab = other.vocabulary()
    other_parts = other.parts()
    spelled: set[int] = set()
    for n in _names(other):
        if n.acronym and n.key not in own.vocabulary():
            spelled |= _spelled_out(n.key, own.parts())
    lower_words = {t.key for q in (own, other) for t in q.tokens if t.text.islower()}
    out = []
    for n in names:
        if n.key in vocab or n.index in spelled:
            continue
        if n.acronym and 2 <= len(n.key) <= 6 and _spelled_out(n.key, other_parts):
            continue
        if not n.confident and ({n.key, n.key + "s", n.key.rstrip("s")} & lower_words):
            continue  # a capitalised first word the other question writes in lower case
        out.append(n)
    return out


def _names_differ(a: _Question, b: _Question, implicit: set[str]) -> str | None:
    only_a = [n for n in _unmatched(_names(a), a, b) if n.key not in implicit]
    only_b = [n for n in _unmatched(_names(b), b, a) if n.key not in implicit]
    sure = any(n.confident for n in only_a + only_b)
    if not sure and only_a and only_b:
        # Two unknown capitalised first words: names only if the rest is much the same.
        drop = {w for n in only_a + only_b for w in content_words(n.key)}
        ca, cb = content_words(a.text) - drop, content_words(b.text) - drop
        sure = bool(ca | cb) and len(ca & cb) / len(ca | cb) >= 0.5
    if sure:
        return (
            f"names differ: {_shown(n.shown for n in only_a)} vs {_shown(n.shown for n in only_b)}"
        )
    return None


def _negations(q: _Question, vocab: set[str]) -> list[str]:
    found = []
    for i, t in enumerate(q.tokens):
        if t.kind != "word":
            continue
        low, key = t.low, t.key
        if low == "no" and i + 1 < len(q.tokens) and q.tokens[i + 1].kind == "num":
            continue  # No. 5
        if low == "lack" and _word(q, i + 1) == "of":
            continue  # "lack of sleep" names a cause; "they lack X" denies X
        if (
            low in _NEGATIONS
            or low == "lack"
            or low.endswith("n't")
            or key in _NT
            or key in _PREFIX_NEGATED
            or any(
                key.startswith(p) and len(key) - len(p) >= 5 and key[len(p) :] in vocab
                for p in _NEG_PREFIXES
            )
        ):
            found.append(t.text)
    return found


def _negation_differs(a: _Question, b: _Question) -> str | None:
    vocab = {t.key for q in (a, b) for t in q.tokens if t.kind == "word"}
    na, nb = _negations(a, vocab), _negations(b, vocab)
    if len(na) != len(nb):
        return f"negation differs: {_shown(na)} vs {_shown(nb)}"
    return None


def _opposites(q: _Question) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for i, t in enumerate(q.tokens):
        if t.kind != "word" or (i in q.used and t.low in _UNITS):
            continue
        hit = _OPPOSITES.get(t.low)
        if t.low in _BEFORE_NUMBER:
            nxt = next((n for n in q.tokens[i + 1 : i + 3] if n.kind != "cur"), None)
            if nxt is not None and (nxt.kind == "num" or nxt.low in _SMALL):
                hit = _BEFORE_NUMBER[t.low]
        if hit:
            out.setdefault(hit[0], []).append((hit[1], t.text))
    return out


def _opposites_differ(a: _Question, b: _Question) -> str | None:
    oa, ob = _opposites(a), _opposites(b)
    for axis in sorted(oa.keys() & ob.keys()):
        sa, sb = Counter(s for s, _ in oa[axis]), Counter(s for s, _ in ob[axis])
        if sa - sb and sb - sa:  # neither is contained in the other
            return (
                f"comparatives differ: {_shown(w for _, w in oa[axis])} vs "
                f"{_shown(w for _, w in ob[axis])}"
            )
    return None
