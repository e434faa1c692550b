"""The TimescaleDB backend: hypertable events, continuous aggregates as the rollup read model.

Records and ingest are the PostgreSQL adapters (the events table has the same columns); what
is added here keeps the aggregates right when events land below their watermark.
"""
