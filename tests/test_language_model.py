import pytest
import torch

from sparsedyn.config import parse_config
from sparsedyn.methods import L1, Compose
from sparsedyn.nn import RNNStack
from sparsedyn.nn.sequence_models import RNNLanguageModel
from sparsedyn.runner import run_experiment
from sparsedyn.tasks.language import LanguageTask, build_corpus
from sparsedyn.train import Trainer, TrainSettings

LINE = "the cat sat on the mat and the dog ran to the park \n"
PATTERN = LINE * 60


def _task():
    corpus = build_corpus({"train": PATTERN, "valid": LINE * 15, "test": LINE * 15})
    return LanguageTask.from_corpus(corpus, bptt=12, eval_batch_size=2)


def test_tiny_corpus_is_overfit_perplexity_falls_toward_one():
    torch.manual_seed(0)
    task = _task()
    model = RNNLanguageModel(task.vocab_size, 32, [64], "lstm")
    before = task.evaluate(model)["val_ppl"]
    settings = TrainSettings(epochs=12, lr=1e-2, batch_size=4, progress=False, eval_every=12)
    Trainer(model, Compose([]), task, settings).fit()
    after = task.evaluate(model)
    assert before > 5 and after["val_ppl"] < 1.6 and after["val_acc"] > 0.85


class _Constant(torch.nn.Module):
    """Always predicts token ``k``."""

    def __init__(self, vocab: int, k: int) -> None:
        super().__init__()
        self.vocab, self.k = vocab, k

    def forward(self, x, state=None):
        logits = torch.full((*x.shape, self.vocab), -10.0)
        logits[..., self.k] = 10.0
        return logits, state


def test_accuracy_is_normalised_by_the_number_of_predicted_tokens():
    task = _task()
    source = task.eval["val"]
    k = int(source[1, 0])
    targets = source[1:]
    nll, correct, n = task.score(_Constant(task.vocab_size, k), source)
    assert n == targets.numel()  # every position after the first is predicted once
    assert correct == int((targets == k).sum())
    assert task.evaluate(_Constant(task.vocab_size, k))["val_acc"] == pytest.approx(correct / n)


def test_plateau_schedule_divides_lr_by_four_when_validation_does_not_improve():
    class Worsening:
        monitor = "val_loss"
        calls = 0

        def train_batches(self, batch_size, generator):
            yield torch.zeros(1)

        def loss(self, model, batch):
            return model(batch).sum() * 0

        def evaluate(self, model):
            Worsening.calls += 1
            return {"val_loss": float(Worsening.calls)}  # never improves after epoch 1

    model = torch.nn.Linear(1, 1)
    settings = TrainSettings(epochs=4, lr=20.0, optimizer="sgd", lr_schedule="plateau", progress=False,
                             eval_every=1, finetune_epochs=0, divergence_factor=1e9)
    t = Trainer(model, Compose([]), Worsening(), settings)
    t.fit()
    assert isinstance(t.optimizer, torch.optim.SGD)
    assert [row["lr"] for row in t.history] == [20.0, 20.0, 5.0, 1.25]


def test_l1_can_skip_recurrent_matrices():
    model = RNNStack(2, [3])
    layer = model.layers[0]
    everything = L1(lam=1.0).penalty(model).item()
    others = L1(lam=1.0, include="nonrecurrent").penalty(model).item()
    assert everything == pytest.approx(others + layer.weight_hh.abs().sum().item(), rel=1e-6)
    assert others == pytest.approx(layer.weight_ih.abs().sum().item(), rel=1e-6)


def test_language_run_from_a_corpus_folder_keeps_masks_and_reports_perplexity(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text(PATTERN)
    cfg = {"task": {"name": "language", "corpus": str(tmp_path), "bptt": 10},
           "model": {"kind": "rnn", "hidden": [32], "embedding_size": 16},
           "methods": [{"name": "moduli", "manifold": "klein", "lam": 0.01},
                       {"name": "magnitude", "sparsity": 0.9, "schedule": "linear", "start": 1, "end": 2,
                        "include": "recurrent"}],
           "trainer": {"epochs": 3, "lr": 1.0, "optimizer": "sgd", "grad_clip": 0.25, "batch_size": 4,
                       "progress": False}}
    res = run_experiment(parse_config(cfg))
    m = res["metrics"]
    assert m["recurrent_sparsity"] == pytest.approx(0.9, abs=1e-3)
    # better than the trivial predictors: the unigram model, and always guessing the commonest word
    words = (LINE.split() + ["<eos>"]) if "<eos>" not in LINE else LINE.split()
    commonest = max(words.count(w) for w in set(words)) / len(words)
    assert 1.0 <= m["test_ppl"] < m["test_unigram_ppl"] and m["test_acc"] > commonest
    with pytest.raises(ValueError, match="tie_weights"):
        RNNLanguageModel(10, 8, [16], tie_weights=True)
