"""The dry run's look at the data: the first training row decoded as the model will see it.

``trainer.dry_run=true`` prints, after the plan, two labelled lines per sequence of the first row
(offline SFT / pairs: ``prompt: ...`` and ``completion (trained): ...``, the latter exactly the
tokens that carry loss; RL: ``prompt: ...``), see :mod:`relift.data.preview`. Only the first row
is read (copied into a one-row file), so a dry run stays fast on large data.

The tokenizer is loaded from local files only (a local folder or the hub cache): a dry run never
downloads. Without a usable tokenizer (e.g. a config-only folder on a CPU box) the preview is
skipped with a note; a first row the dataset cannot read is a config error (exit status 2).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from relift.spec import OfflineRunSpec, RLRunSpec

__all__ = ["print_preview"]


def _first_row_file(files: Any, tmp: Path) -> tuple[Path, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from relift.data.io import expand_data_files

    first = expand_data_files(files)[0]
    parquet = pq.ParquetFile(first)
    batch = next(parquet.iter_batches(batch_size=1), None)
    if batch is None:
        raise ValueError(f"data file {first!r} has no rows")
    path = tmp / "first_row.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    return path, first


def print_preview(spec: RLRunSpec | OfflineRunSpec, exit_bad_config: int = 2) -> int:
    """Print the first row's preview lines; returns 0, or ``exit_bad_config`` when the row cannot be read."""
    from relift.data.preview import preview_lines, rl_preview_lines
    from relift.models.loading import load_tokenizer
    from trainer.data_configs import offline_data_config, rl_data_config

    offline = isinstance(spec, OfflineRunSpec)
    tok_path = spec.model.tokenizer_path
    if not tok_path or not spec.data.train_files:
        return 0
    try:
        tokenizer = load_tokenizer(tok_path, local_files_only=True, trust_remote_code=spec.model.trust_remote_code)
    except Exception as err:  # noqa: BLE001 - any failure only means: no preview
        print(f"[relift] first-row preview skipped: no tokenizer in local files at {tok_path!r} "
              f"({type(err).__name__})", flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        first = ""
        try:
            path, first = _first_row_file(list(spec.data.train_files), Path(tmp))
            if offline:
                from relift.data import PairDataset, SFTDataset

                cls = SFTDataset if spec.data.kind == "sft" else PairDataset
                lines = preview_lines(cls(path, tokenizer, config=offline_data_config(spec.data))[0], tokenizer)
            else:
                from relift.data.rl_dataset import RLDataset

                lines = rl_preview_lines(RLDataset(path, tokenizer, config=rl_data_config(spec.data))[0], tokenizer)
        except (ValueError, KeyError, FileNotFoundError) as err:
            message = str(err).replace(str(Path(tmp) / "first_row.parquet"), first or "the first data file")
            print(f"[relift] data.train_files: the first row cannot be read: {message}", file=sys.stderr, flush=True)
            return exit_bad_config
    print(f"[relift] first training row of {first}, as the model sees it:", flush=True)
    for line in lines:
        print("  " + line, flush=True)
    return 0
