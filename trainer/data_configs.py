"""The datasets' settings from the run spec's data section (shared by the trainers and the dry-run preview)."""

from __future__ import annotations

from relift.data.pair_dataset import PairDataConfig
from relift.data.rl_dataset import RLDataConfig
from relift.data.sft_dataset import SFTDataConfig
from relift.spec import DataSpec, OfflineDataSpec

__all__ = ["rl_data_config", "offline_data_config"]


def rl_data_config(data: DataSpec) -> RLDataConfig:
    """The RL dataset's settings from the data section."""
    return RLDataConfig(prompt_key=data.prompt_key, max_prompt_length=data.max_prompt_length,
                        truncation=data.truncation, apply_chat_template=data.apply_chat_template,
                        target_key=data.target_key, max_target_length=data.max_target_length,
                        max_response_length=data.max_response_length, data_source_key=data.reward_fn_key)


def offline_data_config(data: OfflineDataSpec) -> SFTDataConfig | PairDataConfig:
    """The SFT or pair dataset's settings from the data section."""
    if data.kind == "sft":
        return SFTDataConfig(prompt_key=data.prompt_key, response_key=data.response_key, max_length=data.max_length,
                             truncation=data.truncation, apply_chat_template=data.apply_chat_template)
    return PairDataConfig(prompt_key=data.prompt_key, chosen_key=data.chosen_key, rejected_key=data.rejected_key,
                          max_length=data.max_length, truncation=data.truncation,
                          apply_chat_template=data.apply_chat_template)
