"""Every SQL statement of the analytics read side and of the plain-PostgreSQL rollup upkeep.

Both backends read the same rollup columns (bucket, service, endpoint, method, hits,
status_1xx .. status_5xx, latency_sum, latency_max): the plain tables kept by this service, or
the TimescaleDB continuous aggregates. Which relation a statement reads is chosen from
`ROLLUPS` by name, never spliced into SQL text.

Fixed shapes are `text()` with bound parameters; statements with optional filters or a
window split into pieces are built with SQLAlchemy Core.

Analytics orders text by code point (COLLATE "C"), whatever the database's collation, so
that ties break the same way on every server.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    column,
    false,
    func,
    literal,
    null,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from apm.adapters.schema import api_requests
from apm.domain.analytics import SortKey, WindowPlan, error_classes

_metadata = MetaData()


def _rollup_table(name: str) -> Table:
    return Table(
        name,
        _metadata,
        Column("bucket", DateTime(timezone=True)),
        Column("service", Text),
        Column("endpoint", Text),
        Column("method", Text),
        Column("hits", BigInteger),
        Column("status_1xx", BigInteger),
        Column("status_2xx", BigInteger),
        Column("status_3xx", BigInteger),
        Column("status_4xx", BigInteger),
        Column("status_5xx", BigInteger),
        Column("latency_sum", BigInteger),
        Column("latency_max", Integer),
    )


# The relations analytics may read: the plain tables (migration 0003), the view of the daily
# figures over them (migration 0005) and the continuous aggregates (migration 0002).
ROLLUPS: dict[str, Table] = {
    name: _rollup_table(name)
    for name in (
        "api_requests_hourly_rollup",
        "api_requests_daily_rollup",
        "api_requests_daily_rollup_all",
        "api_requests_hourly",
        "api_requests_daily",
    )
}


def rollup_relation(name: str) -> Table:
    """The allow-listed rollup relation of that name."""
    try:
        return ROLLUPS[name]
    except KeyError:
        raise ValueError(f"unknown rollup relation {name!r}") from None


_events = api_requests.c
_C = "C"
_P95 = 0.95

# Plans every analytics statement for its actual parameters, for the rest of the transaction;
# no rows. The driver prepares statements, and after a few runs PostgreSQL may switch to a
# generic plan that cannot see how long the window is or which endpoints are asked for: a
# plan that suits one hour of events (an index range per endpoint) then runs on a month of
# them and takes ten times longer.
CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


def _matching(
    columns, *, service: str | None, endpoint: str | None, method: str | None
) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if service is not None:
        found.append(columns.service == service)
    if endpoint is not None:
        found.append(columns.endpoint == endpoint)
    if method is not None:
        found.append(columns.method == method)
    return found


def _rollup_errors(relation: Table, error_from: int) -> ColumnElement:
    """errors of a rollup row: the status classes at or above the threshold."""
    classes = error_classes(error_from)
    if not classes:
        raise ValueError("a rollup can only count errors from a hundred boundary")
    total: ColumnElement = relation.c[f"status_{classes[0]}xx"]
    for k in classes[1:]:
        total = total + relation.c[f"status_{k}xx"]
    return total


# --- hourly and daily rows ----------------------------------------------------------------


def rollup_rows(
    relation: Table,
    *,
    first_bucket: datetime,
    end: datetime,
    service: str | None,
    endpoint: str | None,
    method: str | None,
    limit: int,
) -> Select:
    """Reads one rollup relation; rows (bucket, service, endpoint, hits, errors,
    latency_sum, latency_max) per (bucket, service, endpoint), methods merged, errors being
    status >= 500; newest bucket first, then service, endpoint; at most `limit` rows."""
    r = relation.c
    return (
        select(
            r.bucket,
            r.service,
            r.endpoint,
            cast(func.sum(r.hits), BigInteger).label("hits"),
            cast(func.sum(r.status_5xx), BigInteger).label("errors"),
            cast(func.sum(r.latency_sum), BigInteger).label("latency_sum"),
            func.max(r.latency_max).label("latency_max"),
        )
        .where(
            r.bucket >= first_bucket,
            r.bucket < end,
            *_matching(r, service=service, endpoint=endpoint, method=method),
        )
        .group_by(r.bucket, r.service, r.endpoint)
        .order_by(r.bucket.desc(), r.service.collate(_C), r.endpoint.collate(_C))
        .limit(limit)
    )


def _keys(alias: str, *names_and_types: tuple[str, object]):
    """unnest() of parallel array parameters, as a table `alias(name, ...)`."""
    arrays = [bindparam(name, type_=ARRAY(kind)) for name, kind in names_and_types]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, kind) for name, kind in names_and_types))
        .render_derived(name=alias)
    )


def daily_p95(*, method: str | None) -> Select:
    """Reads api_requests for the given (day, service, endpoint) keys (array parameters
    `days`, `services`, `endpoints`); rows (day, service, endpoint, p95): the exact
    percentile_cont(0.95) of that day's latencies for the pair, one index range per key (a
    day of one endpoint is small; a scan of every day in the window would not be)."""
    keys = _keys("k", ("days", DateTime(timezone=True)), ("services", Text), ("endpoints", Text))
    e = _events
    per_key = (
        select(func.percentile_cont(_P95).within_group(e.latency_ms).label("p95"))
        .where(
            e.service == keys.c.services,
            e.endpoint == keys.c.endpoints,
            e.time >= keys.c.days,
            e.time < keys.c.days + timedelta(hours=24),
            *_matching(e, service=None, endpoint=None, method=method),
        )
        .lateral("p")
    )
    return select(
        keys.c.days.label("day"),
        keys.c.services.label("service"),
        keys.c.endpoints.label("endpoint"),
        per_key.c.p95,
    ).select_from(keys.join(per_key, true()))


# --- KPIs and top endpoints over a window split into pieces ------------------------------


def _piece_figures(
    plan: WindowPlan,
    *,
    hourly: Table,
    daily: Table,
    service: str | None,
    endpoint: str | None,
    method: str | None,
    error_from: int,
    by_endpoint: bool,
) -> list[Select]:
    """One aggregate per piece of the window: (service, endpoint,)? hits, errors,
    latency_sum, latency_max; rollup pieces read their relation, edges read raw events."""
    branches: list[Select] = []
    for piece in plan.pieces:
        if piece.source == "raw":
            e = _events
            keys = [
                e.service.collate(_C).label("service"), e.endpoint.collate(_C).label("endpoint")
            ]
            figures = [
                func.count().label("hits"),
                func.count().filter(e.status_code >= error_from).label("errors"),
                cast(func.sum(e.latency_ms), BigInteger).label("latency_sum"),
                func.max(e.latency_ms).label("latency_max"),
            ]
            where = [e.time >= piece.start, e.time < piece.end]
            columns = e
        else:
            relation = hourly if piece.source == "hourly" else daily
            r = relation.c
            keys = [
                r.service.collate(_C).label("service"), r.endpoint.collate(_C).label("endpoint")
            ]
            figures = [
                cast(func.sum(r.hits), BigInteger).label("hits"),
                cast(func.sum(_rollup_errors(relation, error_from)), BigInteger).label("errors"),
                cast(func.sum(r.latency_sum), BigInteger).label("latency_sum"),
                func.max(r.latency_max).label("latency_max"),
            ]
            where = [r.bucket >= piece.start, r.bucket < piece.end]
            columns = r
        where += _matching(columns, service=service, endpoint=endpoint, method=method)
        statement = select(*(keys if by_endpoint else []), *figures).where(*where)
        if by_endpoint:
            statement = statement.group_by(*keys)
        branches.append(statement)
    return branches


# Reads api_requests around a window; one row (last_before, first_after): the latest event
# in [:lo, :start) and the earliest in [:end, :hi), each null when there is none. Two probes
# of the time index.
EDGE_EVENTS = text(
    """
    SELECT (SELECT max(time) FROM api_requests WHERE time >= :lo AND time < :start)
               AS last_before,
           (SELECT min(time) FROM api_requests WHERE time >= :end AND time < :hi)
               AS first_after
    """
)


def window_totals(
    plan: WindowPlan,
    *,
    hourly: Table,
    daily: Table,
    service: str | None,
    endpoint: str | None,
    method: str | None,
    error_from: int,
) -> Select:
    """Reads the rollups for the whole hours/days of the window and api_requests for its
    edges; one row (hits, errors, latency_sum, latency_max), exact for `[start, end)`."""
    branches = _piece_figures(
        plan, hourly=hourly, daily=daily, service=service, endpoint=endpoint, method=method,
        error_from=error_from, by_endpoint=False,
    )
    if not branches:
        return select(
            literal(0, BigInteger).label("hits"),
            literal(0, BigInteger).label("errors"),
            null().label("latency_sum"),
            null().label("latency_max"),
        )
    pieces = union_all(*branches).subquery("pieces")
    return select(
        func.coalesce(cast(func.sum(pieces.c.hits), BigInteger), 0).label("hits"),
        func.coalesce(cast(func.sum(pieces.c.errors), BigInteger), 0).label("errors"),
        cast(func.sum(pieces.c.latency_sum), BigInteger).label("latency_sum"),
        func.max(pieces.c.latency_max).label("latency_max"),
    )


def _p95_by(
    where: list[ColumnElement[bool]],
    keys: list[tuple[str, ColumnElement]],
    *,
    source: FromClause | None = None,
) -> Select:
    """Exact percentile_cont(0.95) of api_requests.latency_ms per group of `keys`, from the
    distribution of latency values (a count per distinct value) instead of a sort of every
    event: the same float8 interpolation as PostgreSQL's, so the same figure bit for bit,
    with memory bounded by the distinct values and a scan free to run in parallel."""
    e = _events
    dist = (
        select(
            *(column.label(name) for name, column in keys),
            e.latency_ms.label("v"),
            func.count().label("c"),
        )
        .select_from(api_requests if source is None else source)
        .where(*where)
        .group_by(*(column for _, column in keys), e.latency_ms)
        .subquery("dist")
    )
    group = [dist.c[name] for name, _ in keys]
    ranked = select(
        *group,
        dist.c.v,
        # Events with a latency up to v: the value at 0-based rank r is the least v whose
        # count passes r.
        cast(
            func.sum(dist.c.c).over(partition_by=group or None, order_by=dist.c.v), BigInteger
        ).label("upto"),
        # PostgreSQL's position: percentile * (rows - 1), in float8.
        (
            literal(_P95, Float)
            * cast(func.sum(dist.c.c).over(partition_by=group or None) - 1, Float)
        ).label("pos"),
    ).subquery("ranked")
    r = ranked.c
    rank_group = [r[name] for name, _ in keys]
    picked = (
        select(
            *rank_group,
            cast(func.min(r.v).filter(r.upto > func.floor(r.pos)), Float).label("first"),
            cast(func.min(r.v).filter(r.upto > func.ceil(r.pos)), Float).label("second"),
            func.max(r.pos).label("pos"),
        )
        .group_by(*rank_group)
        .subquery("picked")
    )
    k = picked.c
    # float8_lerp: first + (pos - floor(pos)) * (second - first).
    return select(
        *(k[name] for name, _ in keys),
        (k.first + (k.pos - func.floor(k.pos)) * (k.second - k.first)).label("p95"),
    )


def window_p95(
    *,
    start: datetime,
    end: datetime,
    service: str | None,
    endpoint: str | None,
    method: str | None,
) -> Select:
    """Reads api_requests in `[start, end)`; one row (p95): the exact percentile_cont(0.95)
    of the matching events' latencies (null without events)."""
    return _p95_by(
        [
            _events.time >= start,
            _events.time < end,
            *_matching(_events, service=service, endpoint=endpoint, method=method),
        ],
        [],
    )


def _endpoint_p95_all(
    *,
    start: datetime,
    end: datetime,
    service: str | None,
    endpoint: str | None,
    method: str | None,
):
    """Per (service, endpoint) exact p95 over the window's matching events."""
    e = _events
    return _p95_by(
        [
            e.time >= start,
            e.time < end,
            *_matching(e, service=service, endpoint=endpoint, method=method),
        ],
        [("service", e.service.collate(_C)), ("endpoint", e.endpoint.collate(_C))],
    ).subquery("p95")


def top_endpoints(
    plan: WindowPlan,
    *,
    hourly: Table,
    daily: Table,
    start: datetime,
    end: datetime,
    service: str | None,
    endpoint: str | None,
    method: str | None,
    error_from: int,
    sort_by: SortKey,
    descending: bool,
    limit: int,
) -> Select:
    """Reads the rollups for the whole hours/days of the window and api_requests for its
    edges (and, to sort by p95, every matching event of the window); rows (service, endpoint,
    hits, errors, latency_sum, latency_max, p95) per (service, endpoint), methods merged,
    in the asked order with ties by service then endpoint ascending; p95 is null unless it
    is the sort key."""
    branches = _piece_figures(
        plan, hourly=hourly, daily=daily, service=service, endpoint=endpoint, method=method,
        error_from=error_from, by_endpoint=True,
    )
    if not branches:
        # An empty window: the right columns, no rows.
        return select(
            literal("").label("service"), literal("").label("endpoint"),
            literal(0, BigInteger).label("hits"), literal(0, BigInteger).label("errors"),
            literal(0, BigInteger).label("latency_sum"), literal(0).label("latency_max"),
            cast(null(), Float).label("p95"),
        ).where(false())
    pieces = union_all(*branches).subquery("pieces")
    totals = (
        select(
            pieces.c.service,
            pieces.c.endpoint,
            cast(func.sum(pieces.c.hits), BigInteger).label("hits"),
            cast(func.sum(pieces.c.errors), BigInteger).label("errors"),
            cast(func.sum(pieces.c.latency_sum), BigInteger).label("latency_sum"),
            func.max(pieces.c.latency_max).label("latency_max"),
        )
        .group_by(pieces.c.service, pieces.c.endpoint)
        .subquery("totals")
    )
    t = totals.c
    if sort_by == "p95_latency_ms":
        p95 = _endpoint_p95_all(
            start=start, end=end, service=service, endpoint=endpoint, method=method
        )
        source = totals.outerjoin(
            p95, and_(p95.c.service == t.service, p95.c.endpoint == t.endpoint)
        )
        p95_column: ColumnElement = p95.c.p95
    else:
        source = totals
        p95_column = cast(null(), Float)
    hits = func.nullif(t.hits, 0)
    keys: dict[str, ColumnElement] = {
        "hits": t.hits,
        "errors": t.errors,
        "error_rate": cast(t.errors, Float) / hits,
        "avg_latency_ms": cast(t.latency_sum, Float) / hits,
        "max_latency_ms": t.latency_max,
        "p95_latency_ms": p95_column,
    }
    key = keys[sort_by]
    return (
        select(
            t.service, t.endpoint, t.hits, t.errors, t.latency_sum, t.latency_max,
            p95_column.label("p95"),
        )
        .select_from(source)
        .order_by(
            key.desc().nulls_last() if descending else key.asc().nulls_last(),
            t.service.collate(_C),
            t.endpoint.collate(_C),
        )
        .limit(limit)
    )


def endpoint_p95(*, start: datetime, end: datetime, method: str | None) -> Select:
    """Reads api_requests in `[start, end)` for the given (service, endpoint) pairs (array
    parameters `services`, `endpoints`); rows (service, endpoint, p95): the exact
    percentile_cont(0.95) per pair. One pass over the window's events (joined to the pairs)
    rather than one index range per pair: the busiest endpoints' events are spread over every
    page of a long window, and reading them pair by pair fetches each page again and again."""
    keys = _keys("k", ("services", Text), ("endpoints", Text))
    e = _events
    return _p95_by(
        [e.time >= start, e.time < end, *_matching(e, service=None, endpoint=None, method=method)],
        [("service", keys.c.services), ("endpoint", keys.c.endpoints)],
        source=api_requests.join(
            keys, and_(e.service == keys.c.services, e.endpoint == keys.c.endpoints)
        ),
    )


# --- plain-PostgreSQL upkeep ---------------------------------------------------------------
# Ingest appends hourly delta rows (partition `_pending`, no indexes); readers sum per key over
# both partitions, and read a day as its daily rows plus its hourly deltas not folded yet. The
# `_folded` partitions hold at most one row per key, and each daily folded row the sums of its
# day's folded hourly rows (or a refresh's rebuild from the events). Statements that DELETE
# rows and write their replacement (compaction, re-derivation after an edit, refresh) first
# take the upkeep lock, so they never run interleaved: otherwise one could skip rows another
# just folded and count them twice.

# Takes the rollups' upkeep lock until the transaction ends; one row (void). One lock for both
# tables, since every upkeep statement that changes the daily rows reads or moves hourly ones.
UPKEEP_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('apm.rollups'), 1)")

# Reads the columns of one written batch, each a JSON array (:hour: the event's UTC hour as
# hours since 1970-01-01, :service, :endpoint, :method, :status_code, :latency_ms), and appends
# its figures per key and hour to the hourly rollup as delta rows (straight into the partition
# without indexes, migrations 0004 and 0005); no rows. The database aggregates the batch (one round
# trip, no per-event work in the service), and appending takes no row locks, so concurrent
# ingests never wait on each other. The daily rows get these figures from the compaction
# (migration 0005). JSON rather than array parameters: the driver checks every element of an
# array parameter in Python, which cost the service more than the COPY of the events
# themselves; a JSON text is one value. Hour numbers rather than times: parsing a thousand
# timestamps cost more than the rest of the statement.
APPEND_BATCH = text(
    """
    INSERT INTO api_requests_hourly_rollup_pending
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max)
    SELECT to_timestamp(e.hour * 3600), e.service, e.endpoint, e.method,
           count(*),
           count(*) FILTER (WHERE e.status_code < 200),
           count(*) FILTER (WHERE e.status_code >= 200 AND e.status_code < 300),
           count(*) FILTER (WHERE e.status_code >= 300 AND e.status_code < 400),
           count(*) FILTER (WHERE e.status_code >= 400 AND e.status_code < 500),
           count(*) FILTER (WHERE e.status_code >= 500),
           sum(e.latency_ms),
           max(e.latency_ms)
    FROM (
        SELECT CAST(h AS bigint) AS hour, s AS service, p AS endpoint, m AS method,
               CAST(c AS integer) AS status_code, CAST(l AS integer) AS latency_ms
        FROM ROWS FROM (
            json_array_elements_text(CAST(:hour AS json)),
            json_array_elements_text(CAST(:service AS json)),
            json_array_elements_text(CAST(:endpoint AS json)),
            json_array_elements_text(CAST(:method AS json)),
            json_array_elements_text(CAST(:status_code AS json)),
            json_array_elements_text(CAST(:latency_ms AS json))
        ) AS x(h, s, p, m, c, l)
    ) AS e
    GROUP BY e.hour, 2, 3, 4
    """
)

_ADD_TO_FOLDED = """
    ON CONFLICT (bucket, service, endpoint, method) DO UPDATE
    SET hits = r.hits + excluded.hits,
        status_1xx = r.status_1xx + excluded.status_1xx,
        status_2xx = r.status_2xx + excluded.status_2xx,
        status_3xx = r.status_3xx + excluded.status_3xx,
        status_4xx = r.status_4xx + excluded.status_4xx,
        status_5xx = r.status_5xx + excluded.status_5xx,
        latency_sum = r.latency_sum + excluded.latency_sum,
        latency_max = greatest(r.latency_max, excluded.latency_max)
"""

# Moves the hourly rollup's delta rows with a bucket in [:start, :end) into the folded
# partition, adding them to the key's one folded row (an update that changes no indexed column,
# so mostly a heap-only update), and adds the same figures to the daily rows of their days;
# no rows. Hence a day's figures are its daily rows plus its hourly deltas not folded yet (the
# view api_requests_daily_rollup_all). One statement, so the deltas it deletes and the sums
# it adds come from one snapshot: deltas committed meanwhile are neither deleted nor counted.
# Rows of one bucket end up side by side on disk (ORDER BY): a window then reads few pages.
COMPACT = text(
    """
    WITH moved AS (
        DELETE FROM api_requests_hourly_rollup_pending
        WHERE bucket >= :start AND bucket < :end
        RETURNING *
    ), hourly AS (
        INSERT INTO api_requests_hourly_rollup_folded AS r
            (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
             status_4xx, status_5xx, latency_sum, latency_max, folded)
        SELECT bucket, service, endpoint, method, sum(hits), sum(status_1xx),
               sum(status_2xx), sum(status_3xx), sum(status_4xx), sum(status_5xx),
               sum(latency_sum), max(latency_max), true
        FROM moved
        GROUP BY 1, 2, 3, 4
        ORDER BY 1, 2, 3, 4
    """
    + _ADD_TO_FOLDED
    + """
    )
    INSERT INTO api_requests_daily_rollup_folded AS r
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max, folded)
    SELECT date_trunc('day', bucket, 'UTC'), service, endpoint, method, sum(hits),
           sum(status_1xx), sum(status_2xx), sum(status_3xx), sum(status_4xx),
           sum(status_5xx), sum(latency_sum), max(latency_max), true
    FROM moved
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    """
    + _ADD_TO_FOLDED
)

# Reads api_requests for the given hourly keys (arrays :bucket, :service, :endpoint, :method),
# deletes those keys' hourly delta rows and writes one exact row per key that still has
# events; no rows. One statement: the events read and the deltas deleted are one snapshot, so
# deltas of writes committed meanwhile stay, and so do their events' figures.
RECOMPUTE_HOURLY = text(
    """
    WITH keys AS (
        SELECT *
        FROM unnest(CAST(:bucket AS timestamptz[]), CAST(:service AS text[]),
                    CAST(:endpoint AS text[]), CAST(:method AS text[]))
             AS k(bucket, service, endpoint, method)
    ), gone AS (
        DELETE FROM api_requests_hourly_rollup r
        USING keys k
        WHERE r.bucket = k.bucket AND r.service = k.service
          AND r.endpoint = k.endpoint AND r.method = k.method
        RETURNING 1
    )
    INSERT INTO api_requests_hourly_rollup
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max, folded)
    SELECT k.bucket, k.service, k.endpoint, k.method, f.*, true
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT count(*) AS hits,
                   count(*) FILTER (WHERE e.status_code < 200) AS status_1xx,
                   count(*) FILTER (WHERE e.status_code >= 200 AND e.status_code < 300)
                       AS status_2xx,
                   count(*) FILTER (WHERE e.status_code >= 300 AND e.status_code < 400)
                       AS status_3xx,
                   count(*) FILTER (WHERE e.status_code >= 400 AND e.status_code < 500)
                       AS status_4xx,
                   count(*) FILTER (WHERE e.status_code >= 500) AS status_5xx,
                   COALESCE(sum(e.latency_ms), 0) AS latency_sum,
                   COALESCE(max(e.latency_ms), 0) AS latency_max
        FROM api_requests e
        WHERE e.service = k.service AND e.endpoint = k.endpoint AND e.method = k.method
          AND e.time >= k.bucket AND e.time < k.bucket + INTERVAL '1 hour'
    ) f
    -- Reading `gone` first runs the DELETE before any row is written: the key's folded row
    -- is unique, and the new one must not meet the old.
    WHERE f.hits > 0 AND (SELECT count(*) FROM gone) >= 0
    """
)

# Reads the folded hourly rows for the given daily keys (arrays :bucket, :service, :endpoint,
# :method), deletes those keys' daily rows and writes the sums of their 24 hours (keys left
# without folded hours get no row); no rows. Folded rows only: the hourly deltas not folded
# yet reach the daily rows with their compaction (COMPACT). One snapshot, as for
# RECOMPUTE_HOURLY.
RECOMPUTE_DAILY = text(
    """
    WITH keys AS (
        SELECT *
        FROM unnest(CAST(:bucket AS timestamptz[]), CAST(:service AS text[]),
                    CAST(:endpoint AS text[]), CAST(:method AS text[]))
             AS k(bucket, service, endpoint, method)
    ), gone AS (
        DELETE FROM api_requests_daily_rollup r
        USING keys k
        WHERE r.bucket = k.bucket AND r.service = k.service
          AND r.endpoint = k.endpoint AND r.method = k.method
        RETURNING 1
    )
    INSERT INTO api_requests_daily_rollup
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max, folded)
    SELECT k.bucket, k.service, k.endpoint, k.method, f.*, true
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT COALESCE(sum(h.hits), 0) AS hits,
               COALESCE(sum(h.status_1xx), 0) AS status_1xx,
               COALESCE(sum(h.status_2xx), 0) AS status_2xx,
               COALESCE(sum(h.status_3xx), 0) AS status_3xx,
               COALESCE(sum(h.status_4xx), 0) AS status_4xx,
               COALESCE(sum(h.status_5xx), 0) AS status_5xx,
               COALESCE(sum(h.latency_sum), 0) AS latency_sum,
               COALESCE(max(h.latency_max), 0) AS latency_max
        FROM api_requests_hourly_rollup_folded h
        WHERE h.service = k.service AND h.endpoint = k.endpoint AND h.method = k.method
          AND h.bucket >= k.bucket AND h.bucket < k.bucket + INTERVAL '24 hours'
    ) f
    -- Reading `gone` first runs the DELETE before any row is written: the key's folded row
    -- is unique, and the new one must not meet the old.
    WHERE f.hits > 0 AND (SELECT count(*) FROM gone) >= 0
    """
)

# Reads the hourly delta partition; one row (first, last): the earliest and latest bucket of
# the deltas not folded yet, null when there are none.
PENDING_BUCKETS = text(
    "SELECT min(bucket) AS first, max(bucket) AS last FROM api_requests_hourly_rollup_pending"
)

# Refreshes the planner's statistics of the two partitioned rollup tables; no rows.
# Autovacuum analyzes their partitions but never a partitioned table itself, and without the
# parent's statistics the planner guesses the number of (service, endpoint) groups ~20x too
# high and sorts a day of hourly rows instead of hashing them (top endpoints over 24 hours at
# 10M events: ~60 ms instead of ~25 ms).
ANALYZE_ROLLUPS = text("ANALYZE api_requests_hourly_rollup, api_requests_daily_rollup")

# A rebuild waits for the appends in flight and keeps new ones out until it commits (ingest
# appends to the hourly table only): then the events it reads and the deltas that follow it add
# up exactly. Readers are not blocked.
LOCK_APPENDS = text("LOCK TABLE api_requests_hourly_rollup IN EXCLUSIVE MODE")

# Deletes the hourly rollup rows with a bucket in [:start, :end); no rows.
CLEAR_HOURLY = text(
    "DELETE FROM api_requests_hourly_rollup WHERE bucket >= :start AND bucket < :end"
)
# Deletes the daily rollup rows with a bucket in [:start, :end); no rows.
CLEAR_DAILY = text(
    "DELETE FROM api_requests_daily_rollup WHERE bucket >= :start AND bucket < :end"
)

# Reads api_requests in [:start, :end) (whole hours) and writes their hourly rollup rows;
# no rows (the row count is the number written).
REBUILD_HOURLY = text(
    """
    INSERT INTO api_requests_hourly_rollup
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max, folded)
    SELECT date_trunc('hour', time, 'UTC') AS bucket, service, endpoint, method,
           count(*),
           count(*) FILTER (WHERE status_code < 200),
           count(*) FILTER (WHERE status_code >= 200 AND status_code < 300),
           count(*) FILTER (WHERE status_code >= 300 AND status_code < 400),
           count(*) FILTER (WHERE status_code >= 400 AND status_code < 500),
           count(*) FILTER (WHERE status_code >= 500),
           sum(latency_ms),
           max(latency_ms),
           true
    FROM api_requests
    WHERE time >= :start AND time < :end
    GROUP BY 1, 2, 3, 4
    -- Rows of one bucket end up side by side on disk: a window then reads few pages.
    ORDER BY 1, 2, 3, 4
    """
)

# Reads api_requests in [:start, :end) (whole days) and writes their daily rollup rows;
# no rows (the row count is the number written).
REBUILD_DAILY = text(
    """
    INSERT INTO api_requests_daily_rollup
        (bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx,
         status_4xx, status_5xx, latency_sum, latency_max, folded)
    SELECT date_trunc('day', time, 'UTC') AS bucket, service, endpoint, method,
           count(*),
           count(*) FILTER (WHERE status_code < 200),
           count(*) FILTER (WHERE status_code >= 200 AND status_code < 300),
           count(*) FILTER (WHERE status_code >= 300 AND status_code < 400),
           count(*) FILTER (WHERE status_code >= 400 AND status_code < 500),
           count(*) FILTER (WHERE status_code >= 500),
           sum(latency_ms),
           max(latency_ms),
           true
    FROM api_requests
    WHERE time >= :start AND time < :end
    GROUP BY 1, 2, 3, 4
    -- Rows of one bucket end up side by side on disk: a window then reads few pages.
    ORDER BY 1, 2, 3, 4
    """
)

