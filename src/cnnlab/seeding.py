"""Seeds derived from the run seed, one stream per purpose.

Deriving (seed, purpose, *indices) -> seed with a hash keeps streams independent: the data order
of epoch 3 does not depend on how many numbers the model initialisation drew, and seed k gives
the same data order for every combination of an ablation, which is what makes comparisons paired.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(seed: int, purpose: str, *indices: int) -> int:
    text = ":".join([str(int(seed)), purpose, *(str(int(i)) for i in indices)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, purpose: str, *indices: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, purpose, *indices))
    return gen


def seed_everything(seed: int) -> None:
    """Seed the global generators (dropout and anything outside cnnlab's own streams)."""
    random.seed(seed)
    np.random.seed(derive_seed(seed, "numpy") % (2**32))
    torch.manual_seed(derive_seed(seed, "torch"))


def rng_state() -> dict:
    """Global RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
