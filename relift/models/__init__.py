"""Model helpers: loading HF models/tokenizers, the tiny-model builder, log-probs/entropy from logits.

Submodules are imported explicitly (``from relift.models.loading import load_causal_lm``) so that
importing this package stays cheap and pulls in no GPU-only library.
"""
