"""Assignment maps: ordered rules from checkpoint tensor names to model variable paths.

google-research/bert's `get_assignment_map_from_checkpoint` matches names exactly and silently skips the
rest. Here a map is explicit and inspectable. For each checkpoint name, in this order:

- `rename`: (regex, replacement) pairs rewrite the name first (e.g. strip a `student.` prefix), so the
  rest of the map (and the format's built-in map behind it) sees the rewritten name;
- `ignore`: regexes of tensors that are never model weights (optimizer slots, `position_ids`,
  `global_step`); skipped and not reported;
- `rules`: the first whose regex fully matches gives the target variable path (a template with `\\1`-style
  groups) and the transforms to apply (transpose, reshape, ...);
- `discard`: regexes of tensors recognised but not loaded (e.g. pretraining heads, layers a user leaves out);
  reported as discarded and allowed in strict mode;
- otherwise the `fallback` map (a user map chained in front of a format's built-in map with `then`) decides;
  with no fallback the tensor is "unmatched" and makes strict loading fail.

Example (load only the bottom 4 layers of a checkpoint, with the format's built-in rules for the rest):
    >>> bottom = AssignmentMap(discard=[r"encoder\\.layer\\.([4-9]|1\\d)\\..*"])
    >>> load_checkpoint(encoder, path, assignment_map=bottom, allow_missing=[r"transformer_layer_([4-9]|1\\d)/.*"])
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional, Sequence, Tuple, Union

from tfx_transfer.checkpoints.transforms import Transform, transform_from_config
from tfx_transfer.io_utils import read_json


@dataclasses.dataclass(frozen=True)
class Rule:
    """Maps checkpoint names fully matching `pattern` to `target` (a `re` template), then applies `transforms`.

    `head`: the tensor belongs to a task head (a classifier, a span head). A model without that head, or with a head
    of another shape (another number of classes), reports it as discarded instead of failing.
    """

    pattern: str
    target: str
    transforms: Tuple[Transform, ...] = ()
    head: bool = False

    def __post_init__(self):
        try:
            object.__setattr__(self, "_regex", re.compile(self.pattern))
        except re.error as e:
            raise ValueError(f"Assignment rule pattern {self.pattern!r} is not a valid regex: {e}.") from e
        object.__setattr__(self, "transforms", tuple(transform_from_config(t) for t in self.transforms))

    def apply(self, name: str) -> Optional[str]:
        match = self._regex.fullmatch(name)
        if match is None:
            return None
        try:
            return match.expand(self.target)
        except (re.error, IndexError) as e:
            raise ValueError(f"Assignment rule {self.pattern!r} -> {self.target!r}: bad target template ({e}).") from e

    def to_config(self):
        config = {"pattern": self.pattern, "target": self.target}
        if self.transforms:
            config["transforms"] = [t.to_config() for t in self.transforms]
        if self.head:
            config["head"] = True
        return config


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What a map decided for one checkpoint name: kind is 'load', 'ignore', 'discard' or 'unmatched'.

    `discardable`: a 'load' whose name also matches a discard pattern, so a model without the target variable
    (e.g. an encoder reading a checkpoint that has a classifier head) reports it as discarded, not as an error.
    `head`: a 'load' of a task-head tensor (see `Rule.head`).
    """

    kind: str
    target: Optional[str] = None
    transforms: Tuple[Transform, ...] = ()
    discardable: bool = False
    head: bool = False


def _compile_all(patterns, what):
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise ValueError(f"Assignment map {what} pattern {pattern!r} is not a valid regex: {e}.") from e
    return tuple(compiled)


class AssignmentMap:
    """Ordered rules + ignore/discard patterns. Combine with `user_map.then(builtin_map)`."""

    def __init__(self, rules: Sequence[Union[Rule, dict, tuple]] = (), ignore: Sequence[str] = (),
                 discard: Sequence[str] = (), rename: Sequence[Tuple[str, str]] = (), name: str = "custom",
                 fallback: Optional["AssignmentMap"] = None, optional: Sequence[str] = ()):
        """`optional`: regexes of *model* variable paths a checkpoint of this format may lack (e.g. the pooler,
        which Hugging Face's token-classification, QA and masked-LM models do not have): left newly initialised
        and reported, without failing a strict load."""
        self.rules: List[Rule] = [self._as_rule(r) for r in rules]
        self.optional = list(optional)
        self.ignore = list(ignore)
        self.discard = list(discard)
        self.rename = [tuple(pair) for pair in rename]
        self.name = name
        self.fallback = fallback
        self._ignore = _compile_all(self.ignore, "ignore")
        self._discard = _compile_all(self.discard, "discard")
        if any(len(pair) != 2 for pair in self.rename):
            raise ValueError(f"Assignment map rename entries are (pattern, replacement) pairs; got {self.rename}.")
        self._rename = tuple(zip(_compile_all([p for p, _ in self.rename], "rename"), [r for _, r in self.rename]))

    @staticmethod
    def _as_rule(rule) -> Rule:
        if isinstance(rule, Rule):
            return rule
        if isinstance(rule, dict):
            unknown = set(rule) - {"pattern", "target", "transforms", "head"}
            if unknown or not {"pattern", "target"} <= set(rule):
                raise ValueError(
                    f"Assignment rule {rule!r}: expected keys 'pattern', 'target' and optionally 'transforms', 'head'."
                )
            return Rule(rule["pattern"], rule["target"], tuple(rule.get("transforms", ())), bool(rule.get("head")))
        if isinstance(rule, (tuple, list)) and len(rule) in (2, 3):
            return Rule(rule[0], rule[1], tuple(rule[2]) if len(rule) == 3 else ())
        raise ValueError(f"Assignment rule {rule!r}: expected Rule, dict or (pattern, target[, transforms]).")

    def resolve(self, name: str) -> Resolution:
        """Decides what happens to checkpoint tensor `name` (see the module docstring for the order)."""
        for pattern, replacement in self._rename:
            name = pattern.sub(replacement, name)
        if any(p.fullmatch(name) for p in self._ignore):
            return Resolution("ignore")
        discardable = any(p.fullmatch(name) for p in self._discard)
        for rule in self.rules:
            target = rule.apply(name)
            if target is not None:
                return Resolution("load", target, rule.transforms, discardable, rule.head)
        if discardable:
            return Resolution("discard")
        if self.fallback is not None:
            return self.fallback.resolve(name)
        return Resolution("unmatched")

    def then(self, other: "AssignmentMap") -> "AssignmentMap":
        """This map, deciding first; names it leaves unmatched go to `other` (after this map's renames)."""
        fallback = other if self.fallback is None else self.fallback.then(other)
        return AssignmentMap(self.rules, self.ignore, self.discard, self.rename, name=f"{self.name}+{other.name}",
                             fallback=fallback, optional=self.optional)

    def optional_targets(self) -> List[str]:
        """`optional` of this map and of every map behind it."""
        return self.optional + (self.fallback.optional_targets() if self.fallback is not None else [])

    # ------------------------------------------------------------------ JSON
    def to_config(self) -> dict:
        """This map's own parts as JSON (a fallback is not included: it is the format's built-in map)."""
        return {"name": self.name, "rename": [list(pair) for pair in self.rename],
                "rules": [r.to_config() for r in self.rules], "ignore": self.ignore, "discard": self.discard}

    @classmethod
    def from_config(cls, config: dict) -> "AssignmentMap":
        if not isinstance(config, dict):
            raise ValueError(f"An assignment map is a JSON object with 'rules', 'ignore', 'discard'; got {config!r}.")
        unknown = set(config) - {"name", "rename", "rules", "ignore", "discard"}
        if unknown:
            raise ValueError(
                f"Assignment map: unknown keys {sorted(unknown)}; expected name, rename, rules, ignore, discard.")
        return cls(config.get("rules", ()), config.get("ignore", ()), config.get("discard", ()),
                   config.get("rename", ()), name=config.get("name", "custom"))

    @classmethod
    def from_json_file(cls, path: Union[str, os.PathLike]) -> "AssignmentMap":
        return cls.from_config(read_json(path, "an assignment map (JSON with rename, rules, ignore, discard)"))

    def __repr__(self):
        return (f"AssignmentMap(name={self.name!r}, rename={self.rename}, {len(self.rules)} rules, "
                f"ignore={self.ignore}, discard={self.discard}, fallback={self.fallback!r})")
