"""What changed in a run's config between its last checkpoint and a resume, and whether the
checkpointed state can take the change.

A resume continues the state a checkpoint holds; editing config.yaml in between silently changes
the run (a new learning rate) or breaks it (another architecture whose weights do not fit). The
checkpoint records the resolved config it was trained with, and a resume compares it key by key
with the config.yaml it is given.
"""

from __future__ import annotations

from cnnlab.errors import UserError

# Keys whose change leaves every saved tensor's shape and meaning in place: the state loads as it
# is and training goes on with the new value (like changing max_epochs or the LR when resuming a
# Lightning or Keras run). Model, data, optimizer kind, schedule kind, seed and averaging are not
# here: they change what the saved state is or how the remaining steps are drawn.
FORCEABLE = ("name", "train.epochs", "train.log_every", "train.checkpoint_every",
             "train.threads", "train.device", "train.channels_last", "train.compile",
             "train.tta", "train.test", "train.grad_clip", "optim.lr", "optim.weight_decay",
             "optim.momentum",
             "diagnostics.every", "diagnostics.max_samples", "diagnostics.explode_threshold",
             # an observer: it writes events, and no saved state depends on it
             "train.tensorboard")


def flatten(config: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; lists stay values."""
    flat = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def config_changes(stored: dict, current: dict) -> list[dict]:
    """Every key whose value differs, as {"key", "old", "new"}; a key only one side has shows
    its absent side as None."""
    old, new = flatten(stored), flatten(current)
    return [{"key": key, "old": old.get(key), "new": new.get(key)}
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def forceable(key: str) -> bool:
    return key in FORCEABLE


def _listed(changes: list[dict]) -> str:
    return ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changes)


def check_resume_config(stored: dict, current: dict, checkpoint: str, config: str,
                        force: bool) -> list[dict]:
    """The changes a resume may go on with (none unless `force`); raises UserError listing them
    when the config was edited since `checkpoint` was written."""
    changes = config_changes(stored, current)
    if not changes:
        return []
    blocked = [c for c in changes if not forceable(c["key"])]
    if blocked:
        allowed = ("" if len(blocked) == len(changes) else
                   f" (the others, {_listed([c for c in changes if c not in blocked])}, could be "
                   "forced)")
        raise UserError(f"{config} was edited since {checkpoint} was written: {_listed(blocked)}"
                        f"{allowed}; these change what the saved state is, so undo the edit or "
                        "start a new run with the new config")
    if not force:
        raise UserError(f"{config} was edited since {checkpoint} was written: {_listed(changes)};"
                        " undo the edit, or add --force to continue with the new values (they "
                        "are recorded in summary.json as resume_changes)")
    return changes
