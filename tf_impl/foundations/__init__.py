"""Phase 1, days 1-20: from linear regression to CNNs."""
