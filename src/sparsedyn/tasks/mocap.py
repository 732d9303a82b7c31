"""CMU motion capture: an ASF/AMC parser and the mocap35 benchmark loader (subject 35, walking).

The benchmark's 50 dimensions are the 62 AMC channels without the hand, finger, thumb and toe
channels; dims 0-2 are the frame-to-frame root displacement ``x[t+1] - x[t]`` and the rest are
joint angles in degrees; each 300-frame sequence is mean-centred (the published file then adds
1e-5). :func:`benchmark_dims` reproduces ``mocap35.mat``'s first training sequence exactly from
``35_01.amc`` (tested).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACKNOWLEDGEMENT = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
                   "The database was created with funding from NSF EIA-0196217.")
WHERE = "CMU Graphics Lab Motion Capture Database, subject 35 (http://mocap.cs.cmu.edu)"
DROPPED_BONES = ("rhand", "rfingers", "rthumb", "lhand", "lfingers", "lthumb", "rtoes", "ltoes")
ENV_VAR = "SPARSEDYN_MOCAP_DIR"


@dataclass
class Skeleton:
    """Degrees of freedom per bone, from an ASF file (the root's from its ``order``)."""

    dofs: dict[str, list[str]]


@dataclass
class Motion:
    """Per-frame channel values ``(frames, channels)`` and the channel names ``bone.dof``."""

    values: np.ndarray
    channels: list[str]


def _require(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"motion-capture file not found: {path} (get it from {WHERE})")
    return path


def parse_asf(path: str | Path) -> Skeleton:
    """Bones and their ``dof`` lists; a bone without ``dof`` has no channels."""
    lines = _require(path).read_text().splitlines()
    dofs: dict[str, list[str]] = {}
    section, name = None, None
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith(":"):
            section = line.split()[0]
            continue
        words = line.split()
        if section == ":root" and words and words[0] == "order":
            dofs["root"] = [w.lower() for w in words[1:]]
        elif section == ":bonedata" and words:
            if words[0] == "name" and len(words) == 2:
                name = words[1]
                dofs[name] = []
            elif words[0] == "dof":
                if name is None:
                    raise ValueError(f"{path}:{n}: 'dof' before any bone 'name'")
                dofs[name] = words[1:]
    if "root" not in dofs or len(dofs) < 2:
        raise ValueError(f"{path}: not an ASF skeleton (no :root order or no :bonedata)")
    return Skeleton(dofs)


def parse_amc(path: str | Path, skeleton: Skeleton | None = None) -> Motion:
    """Frames of an AMC file; with a skeleton, every bone line is checked against its dof count."""
    lines = _require(path).read_text().splitlines()
    frames: list[dict[str, list[float]]] = []
    for n, raw in enumerate(lines, 1):
        words = raw.split()
        if not words or words[0].startswith(("#", ":")):
            continue
        if len(words) == 1 and words[0].isdigit():
            frames.append({})
            continue
        if not frames:
            raise ValueError(f"{path}:{n}: bone values before the first frame number")
        try:
            values = [float(w) for w in words[1:]]
        except ValueError:
            raise ValueError(f"{path}:{n}: non-numeric value in {raw.strip()!r}") from None
        if skeleton is not None:
            expected = skeleton.dofs.get(words[0])
            if expected is None:
                raise ValueError(f"{path}:{n}: bone {words[0]!r} is not in the skeleton")
            if len(values) != len(expected):
                raise ValueError(f"{path}:{n}: bone {words[0]!r} has {len(values)} values, "
                                 f"the skeleton says {len(expected)}")
        frames[-1][words[0]] = values
    if not frames:
        raise ValueError(f"{path}: no frames")
    bones = list(frames[0])
    if any(list(f) != bones for f in frames):
        raise ValueError(f"{path}: frames list different bones")
    dof_names = (lambda b, k: skeleton.dofs[b][k]) if skeleton else (lambda b, k: str(k))
    channels = [f"{b}.{dof_names(b, k)}" for b in bones for k in range(len(frames[0][b]))]
    return Motion(np.array([[v for b in bones for v in f[b]] for f in frames]), channels)


def benchmark_dims(motion: Motion, frames: int = 300, offset: float = 1e-5) -> np.ndarray:
    """The mocap35 50-d representation of the first ``frames`` frames (see the module docstring)."""
    keep = [i for i, c in enumerate(motion.channels) if c.split(".")[0] not in DROPPED_BONES]
    x = motion.values[:, keep]
    if x.shape[0] < frames + 1:
        raise ValueError(f"need {frames + 1} frames for {frames} displacements, the motion has {x.shape[0]}")
    z = np.concatenate([x[1:frames + 1, :3] - x[:frames, :3], x[:frames, 3:]], axis=1)
    return z - z.mean(0) + offset


def data_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$SPARSEDYN_MOCAP_DIR``; an error says how to provide one."""
    chosen = path or os.environ.get(ENV_VAR)
    if not chosen:
        raise FileNotFoundError(f"no motion-capture data directory: pass one or set ${ENV_VAR} "
                                f"(files from {WHERE})")
    return Path(chosen)


def load_mocap35(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """``{"train": (16, 300, 50), "val": (3, 300, 50), "test": (4, 300, 50)}`` from ``mocap35.mat``."""
    from scipy.io import loadmat

    f = _require(data_dir(path) / "mocap35.mat")
    try:
        m = loadmat(f)
    except Exception as e:  # scipy raises several types for a corrupt file
        raise ValueError(f"{f}: not a readable MATLAB file ({e})") from None
    out = {}
    for split, key in (("train", "Xtr"), ("val", "Xval"), ("test", "Xtest")):
        if key not in m or m[key].ndim != 3 or m[key].shape[2] != 50:
            raise ValueError(f"{f}: missing or malformed {key!r} (expected (sequences, frames, 50))")
        out[split] = np.asarray(m[key], dtype=np.float64)
    return out


def asf_channels(skeleton: Skeleton) -> list[str]:
    """Channel names ``bone.dof`` in the ASF's bone order (root first): the column order of
    ``cmu35WalkJog.mat``, whose rows are every 4th frame of the AMC trials (tested)."""
    return [f"{b}.{d}" for b, dofs in skeleton.dofs.items() for d in dofs]


def load_walkjog(path: str | Path | None = None) -> dict[str, list[np.ndarray]]:
    """Sequences of ``cmu35WalkJog.mat`` (30 Hz, 62 raw channels in :func:`asf_channels` order),
    split by their one-hot labels."""
    from scipy.io import loadmat

    f = _require(data_dir(path) / "cmu35WalkJog.mat")
    try:
        m = loadmat(f)
    except Exception as e:
        raise ValueError(f"{f}: not a readable MATLAB file ({e})") from None
    out = {}
    for split, (yk, lk) in {"train": ("Y", "lbls"), "test": ("Ytest", "lblstest")}.items():
        if yk not in m or lk not in m or m[yk].shape[0] != m[lk].shape[0]:
            raise ValueError(f"{f}: missing or mismatched {yk!r} / {lk!r}")
        labels = m[lk].argmax(axis=1)
        out[split] = [np.asarray(m[yk][labels == k], dtype=np.float64) for k in range(m[lk].shape[1])]
    return out


def forecast_mse(pred: np.ndarray, truth: np.ndarray, given: int = 3) -> float:
    """The published protocol's error: MSE over the frames after the ``given`` ones, averaged over
    sequences (``pred`` and ``truth`` of shape (sequences, frames, dims))."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must share a (sequences, frames, dims) shape, got {pred.shape}, "
                         f"{truth.shape}")
    if not 0 <= given < truth.shape[1]:
        raise ValueError(f"given must be in [0, {truth.shape[1]}), got {given}")
    return float(np.mean([np.mean((p[given:] - t[given:]) ** 2) for p, t in zip(pred, truth)]))
