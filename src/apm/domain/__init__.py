"""The pure core: record types, ports, rules and errors (standard library and msgspec only)."""
