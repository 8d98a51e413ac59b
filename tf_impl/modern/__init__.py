"""Phase 3, days 41-70: attention, Transformers, tokenization, GPT, BERT, vision Transformers, detection, adapters."""
