from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def require_shared(subdir: str) -> Path:
    """The real data set ``../shared/data/<subdir>`` beside the checkout, or a skip with the reason printed."""
    path = SHARED_DATA / subdir
    if not path.exists():
        msg = f"the real data are not beside the checkout ({path})"
        print(msg)
        pytest.skip(msg)
    return path
