"""Phase 2, days 21-40: sequence models (embeddings, RNN, LSTM, GRU, seq2seq) and generative models."""
