"""The rendered reference (docs/reference.md): built offline from the code, complete, and committed as built."""

from pathlib import Path

from sparsedyn.cli import app
from sparsedyn.config import ModelConfig
from sparsedyn.methods import METHODS
from sparsedyn.reference import bounds, render_reference, source_comments
from sparsedyn.tasks import TASKS
from sparsedyn.train import TrainSettings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_the_committed_reference_is_the_one_the_code_renders():
    assert DOCS.read_text() == render_reference(app), "docs/reference.md is stale: run `sparsedyn reference`"


def test_every_config_field_appears_with_its_default_and_bounds():
    text = render_reference(app)
    for model in [ModelConfig, TrainSettings, *(t.Config for t in TASKS.values())]:
        for name, info in model.model_fields.items():
            if name == "name":
                continue
            rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
            assert rows, (model.__name__, name)
            assert any(bounds(info) in row for row in rows), (model.__name__, name, bounds(info))
    assert "| `n_points` | `int` | `30` | >= 2 |" in text  # SystemTaskConfig, by hand
    assert "| `irregular` | `float` | `0.0` | >= 0, < 1 |" in text
    for name, cls in METHODS.items():
        assert f"#### `{name}`: {cls.__name__}" in text
        if cls.strength:
            assert f"Strength parameter: `{cls.strength}`." in text


def test_field_comments_are_read_from_the_source_beside_each_field():
    notes = source_comments(TrainSettings)
    assert notes["gate_lr"] == "learning rate of gate parameters; None = lr"
    assert notes["prox_lr"].startswith("Learning rate of a proximal method's \"prox\" group")  # comment above
    assert "epochs" not in notes  # no comment, no note
