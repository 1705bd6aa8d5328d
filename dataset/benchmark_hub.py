"""Fetch the five math benchmarks from the Hugging Face hub and write the raw jsonl files.

``python -m dataset.math_benchmarks --download`` calls :func:`download_benchmarks`, which loads each
benchmark with ``datasets.load_dataset(repo, config, split=..., revision=...)`` and writes one JSON
object per row to ``<dest>/<name>.jsonl``, the layout :mod:`dataset.math_benchmarks` converts (columns
are kept as the hub has them; the converter knows each one's question and answer columns).

The sources are the copies the DeepScaleR/REDI-style evaluations use (30 / 40 / 500 / 272 / 675 rows).
Column layouts and revisions as published on the hub (looked up on the dataset pages; a revision of
``None`` means the default branch, because no full commit hash was found for it; pin one with
``--revision name=SHA`` once you have checked the copy):

=============  ===================================  ======  =====  ============================================
name           hub id (config)                      split   rows   columns used
=============  ===================================  ======  =====  ============================================
aime24         HuggingFaceH4/aime_2024              train   30     problem, answer (also id, solution, url, year)
amc23          math-ai/amc23                        test    40     question, answer
math500        HuggingFaceH4/MATH-500               test    500    problem, answer (also solution, subject,
                                                                   level, unique_id); revision ff5b2025...
minerva_math   math-ai/minervamath                  test    272    question, answer
olympiadbench  Hothan/OlympiadBench                 train   675    question, final_answer (a list), id;
               (OE_TO_maths_en_COMP)                               revision 3b426ee1...
=============  ===================================  ======  =====  ============================================

Tests pass a fake ``loader``; nothing here reaches the network unless the real ``datasets`` is used.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HUB_SOURCES", "HubSource", "download_benchmarks"]

logger = logging.getLogger(__name__)

DATASETS_PIN = "datasets==5.2.0"  # the version checked with these sources (pyproject extra "hub")


@dataclass(frozen=True)
class HubSource:
    """Where one benchmark lives on the hub."""

    repo: str
    split: str
    config: str | None = None
    revision: str | None = None  # a full commit hash; None = the default branch (not pinned)


HUB_SOURCES: dict[str, HubSource] = {
    "aime24": HubSource("HuggingFaceH4/aime_2024", "train"),
    "amc23": HubSource("math-ai/amc23", "test"),
    "math500": HubSource("HuggingFaceH4/MATH-500", "test", revision="ff5b20257d8185524591543f8ff5993951537bb8"),
    "minerva_math": HubSource("math-ai/minervamath", "test"),
    "olympiadbench": HubSource("Hothan/OlympiadBench", "train", config="OE_TO_maths_en_COMP",
                               revision="3b426ee1d587c71b495146dde9f3e995ee7ac59f"),
}

Loader = Callable[..., Iterable[Mapping[str, Any]]]


def _default_loader() -> Loader:
    try:
        from datasets import load_dataset  # noqa: PLC0415
    except ImportError as err:
        raise RuntimeError(
            "downloading the benchmarks needs the `datasets` package: pip install "
            f"'{DATASETS_PIN}' (or `pip install -e .[hub]`); or put <name>.jsonl files in --input_dir yourself "
            "(see eval_scripts/README.md)") from err
    return load_dataset


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays from pyarrow-backed rows -> plain JSON types."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def download_benchmarks(dest: str | os.PathLike, names: Iterable[str] = tuple(HUB_SOURCES),
                        loader: Loader | None = None, revisions: Mapping[str, str] | None = None,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write ``<dest>/<name>.jsonl`` for each benchmark; an existing file is kept unless ``overwrite``.

    ``loader`` defaults to ``datasets.load_dataset`` and is called as
    ``loader(repo, config, split=split, revision=revision)``. ``revisions`` overrides the pins.
    Raises ``RuntimeError`` naming the benchmark and hub id when a download fails.
    """
    names = list(names)
    unknown = [n for n in names if n not in HUB_SOURCES]
    if unknown:
        raise ValueError(f"no hub source for {unknown}; known: {', '.join(HUB_SOURCES)}")
    out = Path(dest).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        path = out / f"{name}.jsonl"
        if path.exists() and not overwrite:
            logger.info("%s exists; keeping it (pass --overwrite to fetch again)", path)
            written[name] = path
            continue
        src = HUB_SOURCES[name]
        revision = (revisions or {}).get(name, src.revision)
        load = loader or _default_loader()
        try:
            rows = [_jsonable(dict(r)) for r in load(src.repo, src.config, split=src.split, revision=revision)]
        except Exception as err:  # noqa: BLE001 - offline, renamed, gated: one clear line
            raise RuntimeError(f"{name}: could not load {src.repo}"
                               f"{' (' + src.config + ')' if src.config else ''} split {src.split} at revision "
                               f"{revision or 'default branch'} from the hub: {err}. Without hub access, put "
                               f"{name}.jsonl into {out} yourself") from err
        if not rows:
            raise RuntimeError(f"{name}: {src.repo} split {src.split} is empty")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        logger.info("wrote %d rows of %s (%s) to %s", len(rows), name, src.repo, path)
        written[name] = path
    return written
