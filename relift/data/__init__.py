"""Parquet datasets (RL prompts, SFT demonstrations, preference pairs), collate, and the resumable sampler.

Every dataset reads one or many parquet files (local paths, folders, globs or fsspec URLs such as
``hf://``), checks the columns it needs and every row's length at load, and names the file and row
in its errors.
"""

from relift.data.collate import collate_fn, collate_to_dataproto
from relift.data.io import ParquetTable, expand_data_files, read_parquet_files
from relift.data.pair_dataset import PairDataConfig, PairDataset
from relift.data.rl_dataset import RLDataConfig, RLDataset
from relift.data.sampler import ResumableRandomSampler, epoch_order, make_dataloader
from relift.data.sft_dataset import SFTDataConfig, SFTDataset

__all__ = [
    "ParquetTable",
    "expand_data_files",
    "read_parquet_files",
    "RLDataConfig",
    "RLDataset",
    "SFTDataConfig",
    "SFTDataset",
    "PairDataConfig",
    "PairDataset",
    "ResumableRandomSampler",
    "epoch_order",
    "make_dataloader",
    "collate_fn",
    "collate_to_dataproto",
]
