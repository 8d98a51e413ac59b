"""Phase 3 parity tests, days 41-70: attention, Transformers, tokenization, GPT, BERT, ViT, detection, adapters."""
