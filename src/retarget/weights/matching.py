"""Match-dict key mapping: for checkpoints whose names differ from the model's.

A match dict maps substrings of checkpoint keys to substrings of the converted
model's variable paths, e.g. {"attn.c_attn.weight": "attn.c_attn.kernel",
"wte": "wte.embedding"}. A checkpoint key is matched when exactly one
match-dict substring occurs in it; its target is the one variable path that
contains the mapped substring and carries the same numeric indices in the same
order (`h.3.attn...` only matches a path whose indices are 3). No match, more
than one candidate, or two keys claiming one target are errors, listed
together. The transform of each target still comes from the rules.
"""
from __future__ import annotations

import re

from .port import Entry
from .safetensors_io import CheckpointError

INDEX = re.compile(r"(?:^|\.)(\d+)(?=\.|$)")


def _indices(key: str) -> tuple[int, ...]:
    return tuple(int(m) for m in INDEX.findall(key))


def _substring(key: str, match_dict: dict[str, str]) -> tuple[str | None, str | None]:
    found = [s for s in match_dict if s in key]
    longest = [s for s in found if not any(s != other and s in other for other in found)]
    if len(longest) == 1:
        return longest[0], None
    return None, (f"{key}: no match-dict entry occurs in it" if not longest else
                  f"{key}: ambiguous, matched by {sorted(longest)}")


def match_keys(source_keys: list[str], entries: list[Entry], match_dict: dict[str, str]) -> dict[str, str]:
    """Checkpoint key -> the model's torch-side name (`Entry.source`) it feeds."""
    by_target = {e.target: e for e in entries}
    mapping, claimed, problems = {}, {}, []
    for key in source_keys:
        substring, problem = _substring(key, match_dict)
        if problem:
            problems.append(problem)
            continue
        wanted = match_dict[substring]
        candidates = [t for t in by_target if wanted in t and _indices(t) == _indices(key)]
        if len(candidates) != 1:
            problems.append(f"{key}: {'no' if not candidates else len(candidates)} model variable(s) contain "
                            f"{wanted!r} with indices {_indices(key)}" + (f": {candidates[:4]}" if candidates else ""))
            continue
        if candidates[0] in claimed:
            problems.append(f"{key} and {claimed[candidates[0]]} both map to {candidates[0]}")
            continue
        claimed[candidates[0]] = key
        mapping[key] = by_target[candidates[0]].source
    if problems:
        raise CheckpointError("match dict: " + "; ".join(problems))
    return mapping
