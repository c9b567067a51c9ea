"""Drain template miner (He et al., ICWS 2017) over masked messages, with stable ids and persisted state.

Drain in brief: messages are tokenised on whitespace; a fixed-depth prefix tree routes a message by its
token count and then by its first `depth - 2` tokens (tokens holding digits or placeholders route to a
`<*>` child, so variable prefixes do not explode the tree); in the leaf, the message joins the cluster
whose template shares the largest fraction of tokens position by position, if that fraction reaches
`sim_threshold`, else it starts a new cluster. Joining a cluster turns the positions that differ into `<*>`.

Departures from Drain, each for a reason that does not depend on one log format:

- similarity (`_similarity`): any variable position matches any value, `key=<*>` matches any `key=v`,
  and two different plain words at a constant position cost `word_penalty` extra;
- the threshold adapts to the message's length (`adaptive_threshold`): never above (n-1)/n, so a short
  message may always carry one value the masker did not recognise;
- `key=value` tokens generalise to `key=<*>`: the key stays in the template;
- templates one position apart merge, across tree leaves (`_merge_one_apart`): a differing value always,
  a differing plain word once `word_variants` templates differ only there.

The defaults (threshold 0.7, penalty 4, 8 word variants) are the setting the leave-one-dataset-out
procedure of `python -m benchmarks.template_accuracy` picks on the eight LogHub 2k samples; there a
dataset scored with the setting chosen on the other seven reaches a mean GA of 0.957 (in sample 0.976;
drain3 0.9.11 with its defaults 0.884, with our masking 0.902; Drain's published per-dataset 0.954).

Stable ids: a template's id is the first 16 hex digits of sha1 of its text, so the same template gets
the same id in any run, on any machine. When a template generalises (a token becomes `<*>`) its text,
hence its id, changes: the old id is kept in `aliases` (old -> new) and `resolve()` follows the chain,
so ids already written to a warehouse still lead to the live template.

State: `save(path)` / `load(path)` (JSON, see `to_dict`) keep the clusters in their tree leaves, in order,
so a later run routes and matches exactly as the earlier one would have. Format `ops-warehouse/drain-templates/1`:
`{"format", "config": {depth, sim_threshold, max_children, word_penalty, word_variants}, "clusters": [{template_id, template,
size, first_seen_at, last_seen_at, event_types, job_names, example_message}], "leaves": [{"path": [token count,
tok1, ...], "template_ids": [...]}], "aliases": {old_id: live_id}}`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .mask import PLACEHOLDERS, has_placeholder, mask

WILDCARD = "<*>"
STATE_FORMAT = "ops-warehouse/drain-templates/1"
_HAS_DIGIT = re.compile(r"\d")


def template_id(template: str) -> str:
    """Deterministic id of a template text: first 16 hex digits of its sha1."""
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:16]


def _is_variable(token: str) -> bool:
    # Drain routes tokens that look like values to the wildcard branch of the prefix tree.
    return token == WILDCARD or bool(_HAS_DIGIT.search(token)) or has_placeholder(token)


_WORD = re.compile(r"[A-Za-z][A-Za-z'_-]*[.,;:!?]*")


def _is_word(token: str) -> bool:
    return bool(_WORD.fullmatch(token))


def _is_wordish(token: str) -> bool:
    """A plain word once the brackets and quotes around it are off: `(root)` and `[auth]` are words, not values."""
    return _is_word(token.strip("()[]{}<>'\"")) and token not in PLACEHOLDERS and token != WILDCARD


_KEY_VALUE = re.compile(r"([A-Za-z_][\w.-]*=)(.+)")


def _key_of(token: str) -> str | None:
    """`user=` for a `user=root` token: the key is part of the template, whatever stands after `=` is a value."""
    m = _KEY_VALUE.fullmatch(token)
    return m.group(1) if m else None


def _merge_token(t: str, u: str) -> str:
    if t == u:
        return t
    key = _key_of(t)
    if key is not None and key == _key_of(u):
        return key + WILDCARD  # `user=root` + `user=admin` -> `user=<*>`: keep the key, generalise the value
    return WILDCARD


def _merge_tokens(template: list[str], tokens: list[str]) -> list[str]:
    return [_merge_token(t, u) for t, u in zip(template, tokens, strict=True)]


def _takes_value(t: str, u: str) -> bool:
    """True when template token `t` already stands for a value that message token `u` can fill."""
    if t == WILDCARD:
        return True
    if t in PLACEHOLDERS:
        return _is_variable(u)
    key = _key_of(t)
    return key is not None and key == _key_of(u)


def adaptive_threshold(base: float, n_tokens: int) -> float:
    """Similarity a message of `n_tokens` needs: `base`, but never so high that one differing token is refused.

    A fixed ratio treats a 3-token message unfairly (one value in it is a third of it, so 0.7 refuses any
    value at all) while a 30-token message can differ in 9 places. Capping the threshold at (n-1)/n lets
    every message carry at least one value its masker did not recognise; long messages keep `base`.
    """
    if n_tokens <= 1:
        return base
    return min(base, (n_tokens - 1) / n_tokens)


def differing_positions(a: list[str], b: list[str]) -> list[int] | None:
    """Positions where two equally long templates disagree, up to two (None: different lengths).

    Positions where either side already holds a value the other can fill (`<*>`, a placeholder against a
    value, `k=<*>` against `k=v`) agree.
    """
    if len(a) != len(b):
        return None
    found: list[int] = []
    for i, (t, u) in enumerate(zip(a, b, strict=True)):
        if t == u or _takes_value(t, u) or _takes_value(u, t):
            continue
        found.append(i)
        if len(found) == 2:
            break
    return found


@dataclass
class Cluster:
    """One template: its tokens plus the running statistics the warehouse reports."""

    template_id: str
    tokens: list[str]
    size: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    event_types: set[str] = field(default_factory=set)
    job_names: set[str] = field(default_factory=set)
    example_message: str | None = None

    @property
    def template(self) -> str:
        return " ".join(self.tokens)

    def absorb(self, other: Cluster) -> None:
        """Fold another cluster's statistics into this one (used when two clusters reach the same template)."""
        self.size += other.size
        self.first_seen_at = _min_dt(self.first_seen_at, other.first_seen_at)
        self.last_seen_at = _max_dt(self.last_seen_at, other.last_seen_at)
        self.event_types |= other.event_types
        self.job_names |= other.job_names
        self.example_message = self.example_message or other.example_message

    def to_dict(self) -> dict[str, Any]:
        return {
            "template_id": self.template_id,
            "template": self.template,
            "size": self.size,
            "first_seen_at": self.first_seen_at.isoformat() if self.first_seen_at else None,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
            "event_types": sorted(self.event_types),
            "job_names": sorted(self.job_names),
            "example_message": self.example_message,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Cluster:
        return cls(
            template_id=row["template_id"],
            tokens=row["template"].split(" ") if row["template"] else [],
            size=int(row.get("size", 0)),
            first_seen_at=_parse_dt(row.get("first_seen_at")),
            last_seen_at=_parse_dt(row.get("last_seen_at")),
            event_types=set(row.get("event_types", [])),
            job_names=set(row.get("job_names", [])),
            example_message=row.get("example_message"),
        )


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _min_dt(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max_dt(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    clusters: list[Cluster] = field(default_factory=list)


@dataclass(frozen=True)
class AddResult:
    """Outcome of `TemplateMiner.add`: the template id now holding the message and what changed."""

    template_id: str
    cluster: Cluster
    created: bool  # a new cluster was started
    previous_id: str | None  # the cluster's id before this message generalised it (None: unchanged)


class TemplateMiner:
    """Drain over masked text with content-derived ids, an alias map and JSON persistence."""

    def __init__(
        self,
        depth: int = 4,
        sim_threshold: float = 0.7,
        max_children: int = 100,
        word_penalty: float = 4.0,
        word_variants: int | None = 8,
        masker: Callable[[str], str] = mask,
    ) -> None:
        if depth < 3:
            raise ValueError("depth must be at least 3 (root, length layer, one token layer)")
        self.depth = depth
        self.sim_threshold = sim_threshold
        self.max_children = max_children
        self.masker = masker
        self.word_penalty = word_penalty
        self.word_variants = word_variants
        self.clusters: dict[str, Cluster] = {}
        self.aliases: dict[str, str] = {}
        self._root = _Node()

    # ---- public API -------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        return self.masker(text).split()

    def add(self, text: str) -> AddResult:
        """Assign a message to a template, learning from it (new cluster or generalised template)."""
        tokens = self.tokenize(text)
        leaf_path = self._leaf_path(tokens)
        found = self._find(tokens, leaf_path)
        if found is None:
            cluster = Cluster(template_id=template_id(" ".join(tokens)), tokens=tokens)
            cluster = self._insert(cluster, leaf_path)
            cluster.size += 1
            live, previous = self._merge_one_apart(cluster)
            if live is cluster:
                return AddResult(cluster.template_id, cluster, created=True, previous_id=None)
            return AddResult(live.template_id, live, created=False, previous_id=previous)  # joined a sibling
        merged = _merge_tokens(found.tokens, tokens)
        previous = None
        if merged != found.tokens:
            previous = found.template_id
            found.tokens = merged
            found = self._rekey(found)
            found, _ = self._merge_one_apart(found)
        found.size += 1
        return AddResult(found.template_id, found, created=False, previous_id=previous)

    def match(self, text: str) -> str | None:
        """Template id a message would join, without learning from it (None: it would start a new one)."""
        tokens = self.tokenize(text)
        found = self._find(tokens, self._leaf_path(tokens))
        return found.template_id if found else None

    def resolve(self, tid: str) -> str:
        """Follow the alias chain from an id handed out earlier to the live template's id."""
        seen = 0
        while tid in self.aliases:
            tid = self.aliases[tid]
            seen += 1
            if seen > len(self.aliases):  # defensive: a cycle would be a bug, never loop forever
                raise RuntimeError(f"alias cycle at {tid}")
        return tid

    def template_of(self, tid: str) -> str | None:
        cluster = self.clusters.get(self.resolve(tid))
        return cluster.template if cluster else None

    # ---- Drain internals ------------------------------------------------------------------------------

    def _leaf_path(self, tokens: list[str]) -> list[str]:
        """Routing keys: the token count, then the first depth-2 tokens (value-like ones as `<*>`)."""
        prefix = [WILDCARD if _is_variable(t) else t for t in tokens[: self.depth - 2]]
        return [str(len(tokens)), *prefix]

    def _walk(self, path: list[str]) -> _Node | None:
        node = self._root.children.get(path[0])
        for key in path[1:]:
            if node is None:
                return None
            node = node.children.get(key) or node.children.get(WILDCARD)
        return node

    def _find(self, tokens: list[str], path: list[str]) -> Cluster | None:
        leaf = self._walk(path)
        if leaf is None:
            return None
        best, best_key = None, (-1.0, -1)
        for cluster in leaf.clusters:
            sim, params = self._similarity(cluster.tokens, tokens)
            if (sim, params) > best_key:
                best, best_key = cluster, (sim, params)
        return best if best is not None and best_key[0] >= adaptive_threshold(self.sim_threshold, len(tokens)) else None

    def _similarity(self, template: list[str], tokens: list[str]) -> tuple[float, int]:
        """Drain's position-wise similarity, with two changes measured on Loghub (see benchmarks/template_accuracy).

        - a variable position (`<*>` or any placeholder in the template) matches any variable-looking token:
          the masker may type one value two ways (`00106210` is a number, `003a90fc` hex), both are values;
        - two different plain words at a position the template still holds constant weigh `word_penalty`
          extra in the denominator: a different word is the strongest sign of a different message
          ("... client SPP" vs "... client WindowsUpdateAgent"), a different value is not.
        """
        if not tokens:
            return 1.0, 0
        score = 0.0
        params = 0
        penalty = 0.0
        for t, u in zip(template, tokens, strict=True):
            if t == u:
                score += 1
                if t == WILDCARD or t in PLACEHOLDERS:
                    params += 1
            elif _takes_value(t, u):
                params += 1
                score += 1
            elif t == WILDCARD or t in PLACEHOLDERS:
                params += 1
            elif _is_word(t) and _is_word(u):
                penalty += self.word_penalty
        return score / (len(tokens) + penalty), params

    def _merge_one_apart(self, cluster: Cluster) -> tuple[Cluster, str | None]:
        """Fold templates that differ from `cluster` in one position only; returns (live cluster, its old id).

        Drain routes by the first tokens and compares only within a leaf, so two messages that differ in a
        routing token (`chrome.exe ... close` vs `firefox.exe ... close`) never meet; and a short message
        with one unmasked value starts a template of its own. A position where the templates hold a value
        (anything but two plain words) is a variable: they merge. Two plain words at a position are taken
        as different messages ("opened" vs "closed") until `word_variants` templates differ there and
        only there: a position with that many different words is a variable (user names, programs).
        """
        n = len(cluster.tokens)
        if n < 2:
            return cluster, None
        by_position: dict[int, list[Cluster]] = {}
        for other in list(self.clusters.values()):
            if other is cluster or len(other.tokens) != n:
                continue
            diff = differing_positions(other.tokens, cluster.tokens)
            if diff == []:  # it fits a template that lives in another leaf
                by_position = {-1: [other]}
                break
            if diff is not None and len(diff) == 1:
                by_position.setdefault(diff[0], []).append(other)
        for i, siblings in sorted(by_position.items()):
            t = cluster.tokens[i] if i >= 0 else WILDCARD
            values = [s for s in siblings if i < 0 or not (_is_wordish(t) and _is_wordish(s.tokens[i]))]
            if values:
                group = values[:1]
            elif self.word_variants is not None and len({t, *(s.tokens[i] for s in siblings)}) >= self.word_variants:
                group = siblings
            else:
                continue
            merged = _merge_tokens(group[0].tokens, cluster.tokens)
            if not any(_is_wordish(tok) for tok in merged):
                continue  # a template of values only says nothing: keep them apart
            target = group[0]  # the oldest sibling (clusters keep insertion order, also through save/load)
            previous = target.template_id
            merged = target.tokens
            for member in (*group, cluster):
                merged = _merge_tokens(merged, member.tokens)
            live = target
            for member in (target, *group[1:], cluster):
                member.tokens = list(merged)
                if template_id(" ".join(merged)) != member.template_id:
                    live = self._rekey(member)
            live = self.clusters[self.resolve(previous)]
            return live, (previous if live.template_id != previous else None)
        return cluster, None

    def _insert(self, cluster: Cluster, path: list[str]) -> Cluster:
        """Place a new cluster in its leaf (creating the path); returns the live cluster (may be an existing one)."""
        live = self._claim(cluster)
        leaf = self._make_path(path)
        if live not in leaf.clusters:
            leaf.clusters.append(live)
        return live

    def _make_path(self, path: list[str]) -> _Node:
        node = self._root.children.setdefault(path[0], _Node())
        for key in path[1:]:
            node = self._child_for(node, key)
        return node

    def _child_for(self, node: _Node, key: str) -> _Node:
        # Drain's bound on fan-out: once a node has max_children, further distinct keys share the `<*>` child.
        if key in node.children:
            return node.children[key]
        if key != WILDCARD and _is_variable(key):
            key = WILDCARD
        if key == WILDCARD or len(node.children) + 1 < self.max_children:
            return node.children.setdefault(key, _Node())
        return node.children.setdefault(WILDCARD, _Node())

    def _rekey(self, cluster: Cluster) -> Cluster:
        """After a template changed: alias the old id to the new one, merging with a cluster already holding it."""
        old_id = cluster.template_id
        del self.clusters[old_id]
        cluster.template_id = template_id(cluster.template)
        live = self._claim(cluster)
        self.aliases[old_id] = live.template_id
        if live is not cluster:
            self._replace_in_tree(cluster, live)
        return live

    def _claim(self, cluster: Cluster) -> Cluster:
        """Register a cluster under its id; if that id (or what it aliases to) is live, merge into that one."""
        target_id = self.resolve(cluster.template_id)
        existing = self.clusters.get(target_id)
        if existing is None or existing is cluster:
            self.clusters[cluster.template_id] = cluster
            return cluster
        existing.absorb(cluster)
        if len(existing.tokens) == len(cluster.tokens):
            merged = _merge_tokens(existing.tokens, cluster.tokens)
            if merged != existing.tokens:
                existing.tokens = merged
                return self._rekey(existing)
        return existing

    def _replace_in_tree(self, old: Cluster, new: Cluster) -> None:
        for leaf in self._leaves():
            if any(c is old for c in leaf.clusters):
                kept = [new if c is old else c for c in leaf.clusters]
                leaf.clusters = [c for i, c in enumerate(kept) if all(c is not k for k in kept[:i])]

    def _leaves(self, node: _Node | None = None, path: tuple[str, ...] = ()) -> Iterator[_Node]:
        for _, leaf in self._leaf_items(node, path):
            yield leaf

    def _leaf_items(
        self, node: _Node | None = None, path: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], _Node]]:
        node = node or self._root
        if node.clusters:
            yield path, node
        for key, child in node.children.items():
            yield from self._leaf_items(child, (*path, key))

    # ---- persistence ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: config, clusters, tree leaves (path -> ordered template ids), aliases."""
        return {
            "format": STATE_FORMAT,
            "config": {
                "depth": self.depth,
                "sim_threshold": self.sim_threshold,
                "max_children": self.max_children,
                "word_penalty": self.word_penalty,
                "word_variants": self.word_variants,
            },
            "clusters": [c.to_dict() for c in self.clusters.values()],
            "leaves": [
                {"path": list(path), "template_ids": [c.template_id for c in leaf.clusters]}
                for path, leaf in self._leaf_items()
            ],
            "aliases": {old: self.resolve(old) for old in sorted(self.aliases)},
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any], masker: Callable[[str], str] = mask) -> TemplateMiner:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown template state format: {state.get('format')!r}")
        miner = cls(**state["config"], masker=masker)
        miner.clusters = {row["template_id"]: Cluster.from_dict(row) for row in state["clusters"]}
        miner.aliases = dict(state["aliases"])
        for leaf in state["leaves"]:
            node = miner._root
            for key in leaf["path"]:  # rebuild exactly, bypassing fan-out rules: the saved tree already obeyed them
                node = node.children.setdefault(key, _Node())
            node.clusters = [miner.clusters[tid] for tid in leaf["template_ids"]]
        return miner

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically (temp file + rename) so a crash never leaves half a state file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, ensure_ascii=False, separators=(",", ":"))
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str], masker: Callable[[str], str] = mask) -> TemplateMiner:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh), masker=masker)

    @classmethod
    def load_or_new(cls, path: str | os.PathLike[str], **config: Any) -> TemplateMiner:
        return cls.load(path) if Path(path).exists() else cls(**config)
