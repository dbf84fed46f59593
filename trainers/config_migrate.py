"""Reading configs and flags written with the old schedule field names (before every schedule field counted tokens).

Old names, units and their replacements (issue #11):

    log_every        (steps)   -> log_every_tokens        = log_every * batch_size
    eval_every       (steps)   -> eval_every_tokens       = eval_every * batch_size
    resample_every   (steps)   -> resample_every_tokens   = resample_every * batch_size
    resample_window  (steps)   -> resample_window_tokens  = resample_window * batch_size
    resample_steps   (steps)   -> resample_at_tokens      = [s * batch_size for s in resample_steps]
    checkpoint_every (tokens)  -> checkpoint_every_tokens (same value)

Each converted schedule fires at the same steps as before. A method's own fields are carried only for the method the
run uses (kaiming: resample_every; anthropic: resample_window, resample_steps): the others never acted, and their new
defaults keep a migrated config equal to one built today (e.g. the demo's `trainer_cfg.json` files). The converted
resampling fields are flat (`resample_every_tokens`, ...); `trainers.config_resample.nest_flat` then nests them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

STEP_FIELDS = {"log_every": "log_every_tokens", "eval_every": "eval_every_tokens", "resample_every": "resample_every_tokens",
               "resample_window": "resample_window_tokens", "resample_steps": "resample_at_tokens"}
RENAMED = {**STEP_FIELDS, "checkpoint_every": "checkpoint_every_tokens"}
METHOD_OF = {"resample_every": "kaiming", "resample_window": "anthropic", "resample_steps": "anthropic"}


def _tokens(old: str, value: Any, batch_size: int) -> Any:
    if old == "resample_steps":
        return [int(s) * batch_size for s in value]
    return int(value) * batch_size if old in STEP_FIELDS else int(value)


def migrate(d: dict[str, Any], default_batch: int, default_method: str) -> dict[str, Any]:
    """`d` with old field names replaced by the new ones (values converted to tokens); new names win when both are
    present. The batch size and resampling method are `d`'s own (or the given defaults)."""
    out = {k: v for k, v in d.items() if k not in RENAMED}
    batch = int(d.get("batch_size", default_batch))
    method = d.get("resample", default_method)
    method = method.get("method", default_method) if isinstance(method, dict) else getattr(method, "method", method)
    for old, new in RENAMED.items():
        if old in d and new not in d and METHOD_OF.get(old, method) == method:
            out[new] = _tokens(old, d[old], batch)
    return out


def migrate_overrides(overrides: dict[str, Any], base_batch: int, parse_value: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Command-line overrides with old names (deprecated flags, warned about) converted with the run's batch size
    (`batch_size` among the overrides, else `base_batch`); `parse_value` parses command-line strings."""
    old = {k: v for k, v in overrides.items() if k in RENAMED and v is not None}
    if not old:
        return overrides
    out = {k: v for k, v in overrides.items() if k not in RENAMED}
    batch = overrides.get("batch_size", base_batch)
    batch = parse_value(int, batch) if isinstance(batch, str) else int(batch)
    for name, value in old.items():
        if isinstance(value, str):
            value = parse_value(tuple[int, ...], value) if name == "resample_steps" else parse_value(int, value)
        unit = "steps" if name in STEP_FIELDS else "tokens"
        warnings.warn(f"--{name} ({unit}) is deprecated: use --{RENAMED[name]} (tokens)", FutureWarning, stacklevel=3)
        converted = _tokens(name, value, batch)
        out.setdefault(RENAMED[name], tuple(converted) if isinstance(converted, list) else converted)
    return out


__all__ = ["RENAMED", "STEP_FIELDS", "migrate", "migrate_overrides"]
