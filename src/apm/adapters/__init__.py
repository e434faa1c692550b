"""Storage adapters: SQL behind the domain ports (one package per backend)."""
