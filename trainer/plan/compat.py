"""verl and ReLIFT command lines -> relift overrides, before Hydra composes them.

Hydra refuses any key its yaml lacks (unless added with ``+``), so a published verl or ReLIFT
script copied here would stop at its first foreign key. :func:`port_overrides` walks the override
list with the table in :mod:`trainer.plan.compat_table`: an alias is renamed to its relift key, a
key that changes only speed or memory is dropped with a notice, a key whose value relift cannot
honour is a problem naming what to use instead. Keys relift's yaml already has pass through
untouched (the relift key wins over any table row). :func:`finish` then runs what needs the
composed config: global micro-batch counts divided by the world size, and keys that must agree
with a relift key (``sft.grad_clip`` with ``actor.grad_clip``, ...).

Unknown keys: a plain ``key=value`` that relift does not know is a problem with the closest known
key (Hydra would refuse it anyway). An unknown key added with ``+key=value`` is a *warning* with
the closest known key and the run goes on: ``+`` is Hydra's explicit "this key is new" and the key
has no effect on relift, so a typo costs a notice, not the run (issue 13 asks for a warning).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.plan.checker import CONFIG_DIR
from trainer.plan.compat_table import ANY, RULES, Rule

__all__ = ["Ported", "port_overrides", "finish", "port_argv", "emit", "known_keys", "match_rule", "markdown_table"]

REPO = Path(__file__).resolve().parents[2]
TABLE_CONFIGS = ("rl_trainer",)  # the table maps verl's ppo_trainer keys: the online trainer's config
_ABSENT = object()
_EXACT = {r.key: r for r in RULES if "*" not in r.key}
_PATTERNS = tuple(r for r in RULES if "*" in r.key)


@dataclass(frozen=True)
class _Deferred:
    rule: Rule
    key: str
    text: str
    value: Any


@dataclass
class Ported:
    """The rewritten overrides, notices (one line each), problems, and checks left for :func:`finish`."""

    overrides: list[str]
    notices: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    deferred: list[_Deferred] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def known_keys(config_name: str) -> tuple[frozenset[str], frozenset[str]]:
    """Every key of ``trainer/config/<config_name>.yaml`` (inner nodes too) and its open (``{}``) maps."""
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), resolve=False)
    keys: set[str] = set()
    open_maps: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            keys.add(key)
            if isinstance(v, dict):
                if v:
                    walk(v, key + ".")
                else:
                    open_maps.add(key)

    walk({k: v for k, v in raw.items() if k not in ("defaults", "hydra")}, "")
    return frozenset(keys), frozenset(open_maps)


def match_rule(key: str) -> Rule | None:
    """The table row for ``key``: an exact row first, then the first pattern that matches."""
    if key in _EXACT:
        return _EXACT[key]
    return next((r for r in _PATTERNS if fnmatch.fnmatchcase(key, r.key)), None)


def _is_known(key: str, keys: frozenset[str], open_maps: frozenset[str]) -> bool:
    return key in keys or any(key.startswith(m + ".") for m in open_maps)


def _suggest(key: str, config_name: str) -> str:
    keys, _ = known_keys(config_name)
    pool = set(keys) | ({r.key for r in RULES if "*" not in r.key} if config_name in TABLE_CONFIGS else set())
    close = difflib.get_close_matches(key, sorted(pool), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _parse_value(override: str) -> Any:
    """The override's value as Hydra types it (``True`` -> bool, ``'error'`` -> str, ``null`` -> None)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415

    try:
        return OverridesParser.create().parse_override(override).value()
    except Exception:  # noqa: BLE001 - Hydra reports a malformed override itself when it composes
        return _ABSENT


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _in(value: Any, allowed: Iterable[Any]) -> bool:
    """``value`` is one of ``allowed``, with bools and numbers kept apart (``True`` is not ``1``)."""
    return any(
        type(value) is type(a)
        and value == a
        or (
            not isinstance(value, bool)
            and not isinstance(a, bool)
            and isinstance(value, (int, float))
            and isinstance(a, (int, float))
            and value == a
        )
        for a in allowed
    )


def _target(rule: Rule, key: str) -> str:
    assert rule.relift is not None
    if rule.relift.endswith(".*"):
        return rule.relift[:-2] + key[len(rule.key) - 2 :]
    return rule.relift


def _apply_rule(
    rule: Rule, key: str, text: str, value: Any, given: set[str], out: Ported, front: list[str], rest: list[str]
) -> None:
    shown = f"{key}={text}"
    if rule.status == "rejected":
        out.problems.append(f"{shown}: {rule.instead or rule.note}")
        return
    if value is _ABSENT and (
        rule.harmless not in (None, ANY) or rule.values or rule.requires or rule.checks or rule.per_gpu
    ):
        out.problems.append(f"{shown}: cannot read the value")
        return
    if rule.harmless not in (None, ANY) and not _in(value, rule.harmless):
        allowed = " or ".join(_fmt(v) for v in rule.harmless)
        out.problems.append(f"{shown}: relift accepts only {allowed} here; {rule.instead}")
        return
    for tmpl in rule.also:
        positive = "true" if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else "false"
        front.append(tmpl.format(positive=positive))
    if rule.status == "ignored":
        if rule.requires or (rule.checks and _in(value, rule.checks)):
            out.deferred.append(_Deferred(rule, key, text, value))
        else:
            out.notices.append(f"{shown}: accepted, no effect ({rule.note})")
        return
    if rule.status != "alias":  # a "same" row whose key the yaml lacks: let Hydra say so
        rest.append(shown)
        return
    target = _target(rule, key)
    if target in given:
        out.problems.append(f"{key} and {target} are both set: keep only {target} (the relift key)")
        return
    if rule.values is not None:
        hit = [v for v in rule.values if _in(value, (v,))]
        if not hit:
            out.problems.append(f"{shown}: {rule.instead or 'accepted values: ' + ', '.join(map(_fmt, rule.values))}")
            return
        text = str(rule.values[hit[0]]).format(repo=REPO)
    if rule.per_gpu:
        out.deferred.append(_Deferred(rule, key, text, value))
        return
    rest.append(f"{target}={text}")
    implied = "".join(f"; also {a}" for a in front[len(front) - len(rule.also) :]) if rule.also else ""
    out.notices.append(f"{key} -> {target}={text}{implied}" + (f" ({rule.note})" if rule.note else ""))


def port_overrides(config_name: str, overrides: Sequence[str]) -> Ported:
    """Rewrite verl / ReLIFT overrides into relift's; problems are collected, not raised."""
    keys, open_maps = known_keys(config_name)
    table = config_name in TABLE_CONFIGS
    given = {o.lstrip("+").split("=", 1)[0] for o in overrides if "=" in o and not o.startswith("~")}
    last = {o.lstrip("+").split("=", 1)[0]: i for i, o in enumerate(overrides) if "=" in o}
    out = Ported(overrides=[])
    front: list[str] = []
    rest: list[str] = []
    for i, o in enumerate(overrides):
        prefix = "++" if o.startswith("++") else "+" if o.startswith("+") else ""
        body = o[len(prefix) :]
        if o.startswith("~") or "=" not in body:
            rest.append(o)
            continue
        key, text = body.split("=", 1)
        if key.startswith(("hydra.", "hydra/")) or "/" in key or "@" in key:
            rest.append(o)
        elif _is_known(key, keys, open_maps):
            if prefix == "+" and key in keys:  # Hydra refuses + on an existing key
                out.notices.append(f"+{key}: already a relift key, applied as {key}={text}")
                rest.append(body)
            else:
                rest.append(o)
        elif last[key] != i:  # a foreign key given twice: the last one counts, as in Hydra
            continue
        elif table and (rule := match_rule(key)) is not None:
            _apply_rule(rule, key, text, _parse_value(body), given, out, front, rest)
        elif prefix:
            out.notices.append(f"WARNING {o}: relift reads no key {key}; it has no effect{_suggest(key, config_name)}")
            rest.append(o)
        else:
            out.problems.append(
                f"unknown key {key}{_suggest(key, config_name)}; verl and ReLIFT keys that relift "
                "understands are listed in docs/porting.md"
            )
    out.overrides = front + rest
    return out


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def finish(cfg: DictConfig, ported: Ported) -> list[str]:
    """Run the checks that need the composed config; sets per-GPU counts in ``cfg``. Returns problems
    (notices are appended to ``ported.notices``)."""
    problems: list[str] = []
    for d in ported.deferred:
        rule, shown = d.rule, f"{d.key}={d.text}"
        if rule.per_gpu:
            target = _target(rule, d.key)
            if _select(cfg, rule.per_gpu):
                ported.notices.append(f"{shown}: accepted, unused ({rule.per_gpu}=true sizes micro-batches by tokens)")
                continue
            nn, g = _select(cfg, "trainer.nnodes"), _select(cfg, "trainer.n_gpus_per_node")
            world = nn * g if isinstance(nn, int) and isinstance(g, int) else None
            if not isinstance(d.value, int) or isinstance(d.value, bool) or not world or d.value % world:
                problems.append(
                    f"{shown} is a global count that verl divides by the world size {world} "
                    f"(trainer.nnodes x trainer.n_gpus_per_node): {d.value} / {world} is not a whole "
                    f"number; set {target} (per GPU) instead"
                )
                continue
            OmegaConf.update(cfg, target, d.value // world, merge=False)
            ported.notices.append(f"{d.key} -> {target}={d.value // world} ({d.value} / world size {world})")
            continue
        bad = [(k, d.value, _select(cfg, k)) for k in rule.requires if not _in(_select(cfg, k), (d.value,))]
        bad += [
            (k, want, _select(cfg, k))
            for k, want in (rule.checks or {}).get(d.value, ())
            if not _in(_select(cfg, k), (want,))
        ]
        if bad:
            need = ", ".join(f"{k}={_fmt(w)} (it is {_fmt(g)})" for k, w, g in bad)
            problems.append(f"{shown} needs {need}; {rule.instead}")
        else:
            ported.notices.append(f"{shown}: accepted, no effect ({rule.note})")
    return problems


def emit(notices: Iterable[str]) -> None:
    for n in notices:
        print(f"[relift] compat: {n}", file=sys.stderr, flush=True)


def port_argv(config_name: str, argv: list[str]) -> Ported:
    """Rewrite the overrides in ``argv`` (``sys.argv``) in place; flags (``--cfg job``...) are kept."""
    idx = [i for i, a in enumerate(argv[1:], 1) if ("=" in a and not a.startswith("-")) or a.startswith("~")]
    ported = port_overrides(config_name, [argv[i] for i in idx])
    flags = [a for i, a in enumerate(argv) if i not in set(idx)]
    argv[:] = flags + ported.overrides
    return ported


# ---------------------------------------------------------------------------------------------------- docs


def _status(rule: Rule) -> str:
    if rule.status in ("same", "rejected"):
        return rule.status
    if rule.status == "alias":
        if rule.values:
            return "alias: " + ", ".join(
                f"`{_fmt(k)}` -> `{str(v).format(repo='<repo>')}`" for k, v in rule.values.items()
            )
        return "alias, / world size" if rule.per_gpu else "alias"
    if rule.requires:
        return "accepted when equal to " + ", ".join(f"`{k}`" for k in rule.requires) + ", else rejected"
    if rule.checks:
        return "accepted; " + "; ".join(
            f"`{_fmt(v)}` needs " + ", ".join(f"`{k}={_fmt(w)}`" for k, w in kv) for v, kv in rule.checks.items()
        )
    if rule.harmless in (None, ANY):
        return "accepted, no effect"
    return "accepted at " + " / ".join(f"`{_fmt(v)}`" for v in rule.harmless) + ", other values rejected"


def markdown_table() -> str:
    """The table of docs/porting.md, generated from :data:`RULES`."""
    lines = ["| key | from | status | relift key / instead | note |", "| --- | --- | --- | --- | --- |"]
    for r in RULES:
        relift = r.relift or ("" if r.status == "same" else r.instead)
        if r.status == "same":
            relift = r.key
        note = r.note + "".join(f"; also sets `{a.format(positive='true if > 0')}`" for a in r.also)
        lines.append(
            f"| `{r.key}` | {r.source} | {_status(r)} | {relift.replace('|', '/')} | {note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        print("usage: python -m trainer.plan.compat --markdown   # print the docs/porting.md table")
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    sys.stdout.write(markdown_table())
