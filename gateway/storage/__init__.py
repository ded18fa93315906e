"""Storage: the one boundary where SQL is written."""
