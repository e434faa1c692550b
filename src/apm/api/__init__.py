"""HTTP: Litestar controllers, wire helpers and the error mapping."""
