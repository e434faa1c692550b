"""The plain-PostgreSQL backend (PostgreSQL 15 or newer)."""
