"""The one search language (words ANDed, "phrases", -exclusions, OR) and its forms for FTS5 and PostgreSQL.

Every backend gets a query this module wrote from words it kept, never the user's text: no input can reach
an FTS parser as syntax, so no input can make it fail.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from angles.errors import ValidationError

MAX_QUERY_CHARS = 1000
# Storage wraps matched words in these; the caller turns them into brackets, HTML marks or nothing.
MARK_START = "\x02"
MARK_END = "\x03"
MAX_TERMS = 32
# Word characters as SQLite's unicode61 tokenizer sees them: letters and digits; '_' and everything else split.
WORD = re.compile(r"[^\W_]+")
# PostgreSQL's english stop words: its search drops them, so this language drops them on every backend alike.
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are was
    were be been being have has had having do does did doing a an the and but if or because as until while of at by
    for with about against between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more most other some such no
    nor not only own same so than too very s t can will just don should now""".split()
)


@dataclass(frozen=True)
class Term:
    """One word, or a phrase of several that must appear together in this order."""

    words: tuple[str, ...]

    @property
    def is_phrase(self) -> bool:
        return len(self.words) > 1


@dataclass
class Group:
    """Terms that must all appear (`include`) and terms that must not (`exclude`)."""

    include: list[Term] = field(default_factory=list)
    exclude: list[Term] = field(default_factory=list)


@dataclass
class Query:
    """Any one of its groups must match. AND binds tighter than OR, as in PostgreSQL's websearch and in FTS5:
    `a b OR c` finds decisions holding both a and b, or c."""

    groups: list[Group] = field(default_factory=list)

    def words(self) -> list[str]:
        """Every word the query looks for, for marking matches."""
        return [w for group in self.groups for term in group.include for w in term.words]


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


def _term(text: str, *, phrase: bool) -> Term | None:
    words = words_of(text)
    if not phrase:
        # A bare token that holds several words ("e-mail", "a:b") is matched as written, like a phrase.
        if len(words) == 1 and words[0].casefold() in STOP_WORDS:
            return None
    if phrase or len(words) > 1:
        kept = tuple(words)
        if kept and all(w.casefold() in STOP_WORDS for w in kept):
            return None
        return Term(kept) if kept else None
    return Term(tuple(words)) if words else None


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: 'phrase' for quoted text (an unclosed quote runs to the end), 'or', or 'word'."""
    tokens = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            continue
        negated = False
        if char == "-" and i + 1 < n and not text[i + 1].isspace():
            negated = True
            i += 1
            char = text[i]
        if char == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            tokens.append(("-phrase" if negated else "phrase", text[i + 1 : end]))
            i = end + 1
            continue
        end = i
        while end < n and not text[end].isspace() and text[end] != '"':
            end += 1
        word = text[i:end]
        # websearch_to_tsquery takes "or" in any case as the operator; so does this language.
        if word.upper() == "OR" and not negated:
            tokens.append(("or", word))
        else:
            tokens.append(("-word" if negated else "word", word))
        i = end
    return tokens


def parse(text: str) -> Query:
    """The query a person typed, or ValidationError saying in one line why it cannot be searched."""
    if text is None:
        raise ValidationError("the search is empty: give a word to look for")
    text = unicodedata.normalize("NFC", str(text)).replace("\x00", " ")
    if len(text) > MAX_QUERY_CHARS:
        raise ValidationError(f"the search is {len(text)} characters long; at most {MAX_QUERY_CHARS} are searched")
    groups = [Group()]
    for kind, raw in _tokens(text):
        if kind == "or":
            if groups[-1].include or groups[-1].exclude:
                groups.append(Group())
            continue
        term = _term(raw, phrase=kind.endswith("phrase"))
        if term is not None:
            (groups[-1].exclude if kind.startswith("-") else groups[-1].include).append(term)
    groups = [g for g in groups if g.include or g.exclude]
    count = sum(len(g.include) + len(g.exclude) for g in groups)
    if count > MAX_TERMS:
        raise ValidationError(f"the search has {count} terms; at most {MAX_TERMS} are allowed")
    if not groups:
        raise ValidationError("the search has no words to look for (common words like 'the' are ignored)")
    if any(not g.include for g in groups):
        raise ValidationError("the search only excludes words: give at least one word to look for")
    return Query(groups)


def _fts5_term(term: Term) -> str:
    # Words hold only letters and digits, so a double-quoted word is a plain string to FTS5, never an operator.
    return '"' + " ".join(term.words) + '"'


def to_fts5(query: Query) -> str:
    """The FTS5 MATCH expression for a query."""
    parts = []
    for group in query.groups:
        expression = " AND ".join(_fts5_term(t) for t in group.include)
        expression += "".join(f" NOT {_fts5_term(t)}" for t in group.exclude)
        parts.append(f"({expression})")
    return " OR ".join(parts)


def has_phrase(query: Query) -> bool:
    return any(t.is_phrase for g in query.groups for t in (*g.include, *g.exclude))


def without_phrases(query: Query) -> Query:
    """A looser query matching at least what this one matches: each phrase's words in any order, no excluded
    phrase. Found through the index alone, where a phrase needs every candidate's word positions read."""
    groups = []
    for group in query.groups:
        include = [Term((w,)) for t in group.include for w in t.words if w.casefold() not in STOP_WORDS]
        groups.append(Group(include=include, exclude=[t for t in group.exclude if not t.is_phrase]))
    return Query(groups)


def _websearch_term(term: Term) -> str:
    return '"' + " ".join(term.words) + '"' if term.is_phrase else term.words[0]


def to_websearch(query: Query) -> str:
    """The same query in websearch_to_tsquery's syntax (also PostgREST's `wfts` filter)."""
    return " OR ".join(
        " ".join([*map(_websearch_term, g.include), *(f"-{_websearch_term(t)}" for t in g.exclude)])
        for g in query.groups
    )


def any_fts5(words: list[str]) -> str:
    """An FTS5 expression matching any of these words."""
    return " OR ".join(f'"{w}"' for w in words)
