import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_library_example_prints_the_feature_sparsity_and_auroc_of_its_model(capsys):
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    fs, auroc = (float(v) for v in capsys.readouterr().out.split())
    model, truth = namespace["model"].eval(), namespace["task"].truth
    with torch.no_grad():  # by hand: |W_2| |W_1| |W_0| of the gated field (deterministic gates)
        product = torch.eye(truth.shape[1])
        for layer in model.field.layers:
            product = layer.weight.abs() @ product
    product = product.numpy()
    assert fs == np.mean(product == 0)
    assert auroc == roc_auc_score(truth.flatten() != 0, product.flatten())


def test_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_latter():
    first_block = re.search(r"```\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].endswith("sparsedyn demo") and "pytest" in first_block[1]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "grep -m1 -E '^python3 -m venv .* pytest' README.md" in ci
