import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_library_example_runs_and_prints_metrics(capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    fs, auroc = capsys.readouterr().out.split()
    assert 0.0 <= float(fs) <= 1.0 and 0.0 <= float(auroc) <= 1.0


def test_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_latter():
    first_block = re.search(r"```\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].endswith("sparsedyn demo") and "pytest" in first_block[1]
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "grep -m1 -E '^python3 -m venv .* pytest' README.md" in ci
