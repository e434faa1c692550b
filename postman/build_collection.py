"""Writes apm.postman_collection.json: every endpoint of the API contract and its error cases.

The collection is generated so that its ~100 requests stay readable here, as Python data with
their test scripts, instead of as a hand-edited 4000-line JSON file. Run it after a change:

    python postman/build_collection.py

(tests/unit/test_postman.py fails when the JSON file is not what this script writes.)

Every run uses service names unique to the run, so the collection can run again and again
against the same database and its counts stay exact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "apm.postman_collection.json"

JSON = {"key": "Content-Type", "value": "application/json"}


def request(
    name: str,
    method: str,
    path: str,
    *,
    tests: str,
    body: Any = None,
    raw: str | None = None,
    file: str | None = None,
    headers: list[dict[str, str]] | None = None,
    prerequest: str = "",
) -> dict[str, Any]:
    """One item: `path` is appended to {{base_url}}; `tests` is the Postman test script."""
    item: dict[str, Any] = {
        "name": name,
        "request": {
            "method": method,
            "header": list(headers or []),
            "url": "{{base_url}}" + path,
        },
        "event": [],
    }
    if body is not None or raw is not None:
        text = raw if raw is not None else json.dumps(body, indent=2)
        item["request"]["body"] = {"mode": "raw", "raw": text}
        if not any(h["key"].lower() == "content-type" for h in item["request"]["header"]):
            item["request"]["header"].append(JSON)
    if file is not None:
        item["request"]["body"] = {"mode": "file", "file": {"src": file}}
    if prerequest:
        item["event"].append(_script("prerequest", prerequest))
    item["event"].append(_script("test", tests))
    return item


def _script(kind: str, source: str) -> dict[str, Any]:
    lines = [line for line in source.strip("\n").splitlines()]
    return {"listen": kind, "script": {"type": "text/javascript", "exec": lines}}


def folder(name: str, description: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "description": description, "item": items}


def status(code: int) -> str:
    return f'pm.test("status {code}", () => pm.response.to.have.status({code}));\n'


def field_error(code: int, field: str, contains: str = "") -> str:
    """A 400 field error (or another status with a field error) naming `field`."""
    check = (
        f'    pm.expect(body.errors["{field}"].join(" ")).to.include({json.dumps(contains)});\n'
        if contains
        else ""
    )
    return (
        status(code)
        + f'pm.test("field error names {field}", () => {{\n'
        "    const body = pm.response.json();\n"
        '    pm.expect(body.detail).to.be.a("string").and.not.empty;\n'
        f'    pm.expect(body.errors).to.have.property("{field}");\n'
        f'    pm.expect(body.errors["{field}"]).to.be.an("array").that.is.not.empty;\n'
        + check
        + "});\n"
    )


def detail(code: int, contains: str = "") -> str:
    check = (
        f"    pm.expect(body.detail).to.include({json.dumps(contains)});\n" if contains else ""
    )
    return (
        status(code)
        + 'pm.test("JSON body with a detail sentence", () => {\n'
        "    const body = pm.response.json();\n"
        '    pm.expect(body.detail).to.be.a("string").and.not.empty;\n'
        + check
        + "});\n"
    )


def event(**overrides: Any) -> dict[str, Any]:
    base = {
        "time": "2025-12-14T12:00:00Z",
        "service": "{{svc}}",
        "endpoint": "/api/v1/orders",
        "method": "GET",
        "status_code": 200,
        "latency_ms": 42,
        "trace_id": "trace-{{run}}",
        "user_ref": "user-001",
        "tags": {"env": "smoke"},
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not ...}


# --- Health ---------------------------------------------------------------------------------

HEALTH = [
    request(
        "health",
        "GET",
        "/api/health/",
        prerequest="""
// Names unique to this run keep counts exact when the collection runs again on one database.
const run = Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
pm.collectionVariables.set("run", run);
pm.collectionVariables.set("svc", "newman-crud-" + run);
pm.collectionVariables.set("list_svc", "newman-list-" + run);
pm.collectionVariables.set("ingest_svc", "newman-ingest-" + run);
pm.collectionVariables.set("an_svc", "newman-analytics-" + run);
""",
        tests=status(200)
        + """pm.test("status ok, no database probe", () => {
    const body = pm.response.json();
    pm.expect(body.status).to.eql("ok");
    pm.expect(body).to.not.have.property("db");
});
pm.test("request id header", () => pm.response.to.have.header("X-Request-Id"));
""",
    ),
    request(
        "health without trailing slash",
        "GET",
        "/api/health",
        tests=status(200) + 'pm.test("status ok", () => pm.expect(pm.response.json().status).to.eql("ok"));\n',
    ),
    request(
        "health db=1 probes the database",
        "GET",
        "/api/health/?db=1",
        tests=status(200)
        + """pm.test("db ok", () => {
    const body = pm.response.json();
    pm.expect(body.status).to.eql("ok");
    pm.expect(body.db).to.eql("ok");
});
""",
    ),
    request(
        "health db=yes probes the database too",
        "GET",
        "/api/health/?db=yes",
        tests=status(200) + 'pm.test("db ok", () => pm.expect(pm.response.json().db).to.eql("ok"));\n',
    ),
    request(
        "health db=0 does not probe",
        "GET",
        "/api/health/?db=0",
        tests=status(200) + 'pm.test("no db key", () => pm.expect(pm.response.json()).to.not.have.property("db"));\n',
    ),
    request("health PUT is 405", "PUT", "/api/health/", body={}, tests=status(405)),
    request("unknown path is 404 JSON", "GET", "/api/no-such-thing/", tests=detail(404)),
]

# --- CRUD -----------------------------------------------------------------------------------

RECORD_SHAPE = """pm.test("record shape", () => {
    const r = pm.response.json();
    pm.expect(r).to.have.all.keys("id", "time", "service", "endpoint", "method", "status_code",
        "latency_ms", "trace_id", "user_ref", "tags");
    pm.expect(r.id).to.be.a("number");
});
"""

CRUD = [
    request(
        "create",
        "POST",
        "/api/requests/",
        body=event(method="post", status_code=201, latency_ms=120, extra_field="ignored"),
        tests=status(201)
        + RECORD_SHAPE
        + """pm.test("stored as sent, method upper-case, unknown keys ignored", () => {
    const r = pm.response.json();
    pm.expect(r.service).to.eql(pm.collectionVariables.get("svc"));
    pm.expect(r.method).to.eql("POST");
    pm.expect(r.status_code).to.eql(201);
    pm.expect(r.latency_ms).to.eql(120);
    pm.expect(r.time).to.eql("2025-12-14T12:00:00Z");
    pm.expect(r.tags).to.eql({env: "smoke"});
    pm.expect(r).to.not.have.property("extra_field");
});
pm.test("Location names the new record", () => {
    const r = pm.response.json();
    pm.expect(pm.response.headers.get("Location")).to.include("/api/requests/" + r.id + "/");
});
pm.collectionVariables.set("request_id", pm.response.json().id);
""",
    ),
    request(
        "create: offset time is converted to UTC",
        "POST",
        "/api/requests/",
        body=event(time="2025-12-14T12:00:00+02:00", trace_id=None, user_ref=None, tags=...),
        tests=status(201)
        + """pm.test("UTC with Z, defaults for optional fields", () => {
    const r = pm.response.json();
    pm.expect(r.time).to.eql("2025-12-14T10:00:00Z");
    pm.expect(r.trace_id).to.eql(null);
    pm.expect(r.user_ref).to.eql(null);
    pm.expect(r.tags).to.eql({});
});
""",
    ),
    request(
        "create: naive time is UTC, fractions kept",
        "POST",
        "/api/requests/",
        body=event(time="2025-12-14T12:00:00.250"),
        tests=status(201)
        + """pm.test("naive is UTC, fraction kept", () => {
    const time = pm.response.json().time;
    pm.expect(time).to.match(/^2025-12-14T12:00:00\\.250*Z$/);
    pm.expect(new Date(time).toISOString()).to.eql("2025-12-14T12:00:00.250Z");
});
""",
    ),
    request(
        "create: service and endpoint are trimmed",
        "POST",
        "/api/requests/",
        body=event(service="  {{svc}}  ", endpoint="  /trimmed  "),
        tests=status(201)
        + """pm.test("trimmed", () => {
    const r = pm.response.json();
    pm.expect(r.service).to.eql(pm.collectionVariables.get("svc"));
    pm.expect(r.endpoint).to.eql("/trimmed");
});
""",
    ),
    request(
        "create: gzip body",
        "POST",
        "/api/requests/",
        file="fixtures/event.json.gz",
        headers=[JSON, {"key": "Content-Encoding", "value": "gzip"}],
        tests=status(201)
        + 'pm.test("decoded", () => pm.expect(pm.response.json().service).to.eql("newman-gzip"));\n',
    ),
    request(
        "create: every required field missing",
        "POST",
        "/api/requests/",
        body={"tags": {}},
        tests=status(400)
        + """pm.test("each required field named", () => {
    const errors = pm.response.json().errors;
    for (const field of ["time", "service", "endpoint", "method", "status_code", "latency_ms"]) {
        pm.expect(errors, field).to.have.property(field);
    }
});
""",
    ),
    request(
        "create: status_code out of range",
        "POST",
        "/api/requests/",
        body=event(status_code=700),
        tests=field_error(400, "status_code", "status_code must be a valid HTTP status (100..599)."),
    ),
    request(
        "create: status_code boolean",
        "POST",
        "/api/requests/",
        body=event(status_code=True),
        tests=field_error(400, "status_code"),
    ),
    request(
        "create: status_code fraction",
        "POST",
        "/api/requests/",
        body=event(status_code=200.5),
        tests=field_error(400, "status_code"),
    ),
    request(
        "create: unknown method",
        "POST",
        "/api/requests/",
        body=event(method="TRACE"),
        tests=field_error(400, "method", "GET"),
    ),
    request(
        "create: blank service",
        "POST",
        "/api/requests/",
        body=event(service="   "),
        tests=field_error(400, "service"),
    ),
    request(
        "create: service too long",
        "POST",
        "/api/requests/",
        body=event(service="s" * 101),
        tests=field_error(400, "service", "100"),
    ),
    request(
        "create: endpoint too long",
        "POST",
        "/api/requests/",
        body=event(endpoint="/" + "e" * 255),
        tests=field_error(400, "endpoint", "255"),
    ),
    request(
        "create: negative latency",
        "POST",
        "/api/requests/",
        body=event(latency_ms=-1),
        tests=field_error(400, "latency_ms"),
    ),
    request(
        "create: latency above int32",
        "POST",
        "/api/requests/",
        body=event(latency_ms=2147483648),
        tests=field_error(400, "latency_ms"),
    ),
    request(
        "create: trace_id too long",
        "POST",
        "/api/requests/",
        body=event(trace_id="t" * 129),
        tests=field_error(400, "trace_id", "128"),
    ),
    request(
        "create: tags must be an object",
        "POST",
        "/api/requests/",
        body=event(tags=["a"]),
        tests=field_error(400, "tags"),
    ),
    request(
        "create: tags null",
        "POST",
        "/api/requests/",
        body=event(tags=None),
        tests=field_error(400, "tags"),
    ),
    request(
        "create: bad time",
        "POST",
        "/api/requests/",
        body=event(time="yesterday"),
        tests=field_error(400, "time"),
    ),
    request(
        "create: body is not an object",
        "POST",
        "/api/requests/",
        body=[event()],
        tests=detail(400),
    ),
    request(
        "create: malformed JSON is 400 with the reason",
        "POST",
        "/api/requests/",
        raw='{"service": ',
        tests=detail(400, "JSON"),
    ),
    request(
        "create: wrong content type is 415",
        "POST",
        "/api/requests/",
        raw="service=billing",
        headers=[{"key": "Content-Type", "value": "text/plain"}],
        tests=detail(415),
    ),
    request(
        "create: without trailing slash",
        "POST",
        "/api/requests",
        body=event(endpoint="/no-slash"),
        tests=status(201),
    ),
    request(
        "read",
        "GET",
        "/api/requests/{{request_id}}/",
        tests=status(200)
        + RECORD_SHAPE
        + 'pm.test("same record", () => pm.expect(pm.response.json().id).to.eql(Number(pm.collectionVariables.get("request_id"))));\n',
    ),
    request(
        "read without trailing slash",
        "GET",
        "/api/requests/{{request_id}}",
        tests=status(200),
    ),
    request("read unknown id is 404", "GET", "/api/requests/987654321987/", tests=detail(404)),
    request("read non-numeric id is 404", "GET", "/api/requests/abc/", tests=status(404)),
    request(
        "replace (PUT)",
        "PUT",
        "/api/requests/{{request_id}}/",
        body=event(endpoint="/api/v1/replaced", method="delete", status_code=204, latency_ms=7,
                   tags={"replaced": True}),
        tests=status(200)
        + """pm.test("every field replaced", () => {
    const r = pm.response.json();
    pm.expect(r.id).to.eql(Number(pm.collectionVariables.get("request_id")));
    pm.expect(r.endpoint).to.eql("/api/v1/replaced");
    pm.expect(r.method).to.eql("DELETE");
    pm.expect(r.status_code).to.eql(204);
    pm.expect(r.latency_ms).to.eql(7);
    pm.expect(r.tags).to.eql({replaced: true});
});
""",
    ),
    request(
        "replace (PUT) needs every required field",
        "PUT",
        "/api/requests/{{request_id}}/",
        body={"latency_ms": 5},
        tests=field_error(400, "service"),
    ),
    request(
        "replace unknown id is 404",
        "PUT",
        "/api/requests/987654321987/",
        body=event(),
        tests=detail(404),
    ),
    request(
        "update (PATCH) changes only the given fields",
        "PATCH",
        "/api/requests/{{request_id}}/",
        body={"latency_ms": 99, "user_ref": "user-patched"},
        tests=status(200)
        + """pm.test("only latency and user_ref changed", () => {
    const r = pm.response.json();
    pm.expect(r.latency_ms).to.eql(99);
    pm.expect(r.user_ref).to.eql("user-patched");
    pm.expect(r.endpoint).to.eql("/api/v1/replaced");
    pm.expect(r.method).to.eql("DELETE");
});
""",
    ),
    request(
        "update (PATCH) validates what it gets",
        "PATCH",
        "/api/requests/{{request_id}}/",
        body={"status_code": 42},
        tests=field_error(400, "status_code"),
    ),
    request(
        "update unknown id is 404",
        "PATCH",
        "/api/requests/987654321987/",
        body={"latency_ms": 1},
        tests=detail(404),
    ),
    request(
        "wrong method on the collection is 405",
        "DELETE",
        "/api/requests/",
        tests=status(405),
    ),
    request(
        "wrong method on a record is 405",
        "POST",
        "/api/requests/{{request_id}}/",
        body=event(),
        tests=status(405),
    ),
    request(
        "delete",
        "DELETE",
        "/api/requests/{{request_id}}/",
        tests=status(204) + 'pm.test("empty body", () => pm.expect(pm.response.text()).to.eql(""));\n',
    ),
    request("read after delete is 404", "GET", "/api/requests/{{request_id}}/", tests=detail(404)),
    request("delete again is 404", "DELETE", "/api/requests/{{request_id}}/", tests=detail(404)),
]

# --- List, filters, ordering, pages ------------------------------------------------------------

LIST_EVENTS = [
    event(service="{{list_svc}}", time="2025-12-10T08:00:00Z", endpoint="/api/v1/orders",
          method="GET", status_code=200, latency_ms=10, trace_id="t-a-{{run}}", user_ref="alice"),
    event(service="{{list_svc}}", time="2025-12-11T08:00:00Z", endpoint="/api/v1/orders",
          method="POST", status_code=201, latency_ms=50, trace_id="t-b-{{run}}", user_ref="bob"),
    event(service="{{list_svc}}", time="2025-12-12T08:00:00Z", endpoint="/api/v1/users",
          method="GET", status_code=404, latency_ms=30, trace_id="t-c-{{run}}", user_ref="alice"),
    event(service="{{list_svc}}", time="2025-12-13T08:00:00Z", endpoint="/api/v1/users",
          method="DELETE", status_code=500, latency_ms=70, trace_id="t-d-{{run}}", user_ref=None),
    event(service="{{list_svc}}", time="2025-12-14T08:00:00Z", endpoint="/api/v1/payments",
          method="PATCH", status_code=204, latency_ms=20, trace_id="t-e-{{run}}", user_ref="carol"),
]


def list_request(name: str, query: str, tests: str) -> dict[str, Any]:
    return request(name, "GET", "/api/requests/?service={{list_svc}}" + query, tests=tests)


def ids_are(expression: str) -> str:
    """Assert the latency_ms of the results, in order (each event has its own latency)."""
    return (
        status(200)
        + f'pm.test("results are {expression}", () => {{\n'
        "    const body = pm.response.json();\n"
        f"    pm.expect(body.results.map(r => r.latency_ms)).to.eql({expression});\n"
        f"    pm.expect(body.count).to.eql({expression}.length);\n"
        "});\n"
    )


LIST = [
    request(
        "setup: ingest five events for the list",
        "POST",
        "/api/requests/ingest/",
        body=LIST_EVENTS,
        tests=status(200)
        + 'pm.test("all stored", () => pm.expect(pm.response.json().inserted).to.eql(5));\n',
    ),
    list_request(
        "list: newest first by default",
        "",
        ids_are("[20, 70, 30, 50, 10]")
        + """pm.test("page envelope", () => {
    const body = pm.response.json();
    pm.expect(body).to.have.all.keys("count", "next", "previous", "results");
    pm.expect(body.next).to.eql(null);
    pm.expect(body.previous).to.eql(null);
});
""",
    ),
    request(
        "list: without trailing slash",
        "GET",
        "/api/requests?service={{list_svc}}",
        tests=ids_are("[20, 70, 30, 50, 10]"),
    ),
    list_request(
        "list: page 1 of 3",
        "&page_size=2",
        status(200)
        + """pm.test("two results, next page, no previous", () => {
    const body = pm.response.json();
    pm.expect(body.count).to.eql(5);
    pm.expect(body.results.map(r => r.latency_ms)).to.eql([20, 70]);
    pm.expect(body.next).to.include("page=2");
    pm.expect(body.next).to.include("page_size=2");
    pm.expect(body.previous).to.eql(null);
});
""",
    ),
    list_request(
        "list: page 2 of 3",
        "&page_size=2&page=2",
        status(200)
        + """pm.test("middle page links both ways", () => {
    const body = pm.response.json();
    pm.expect(body.results.map(r => r.latency_ms)).to.eql([30, 50]);
    pm.expect(body.next).to.include("page=3");
    pm.expect(body.previous).to.be.a("string");
});
""",
    ),
    list_request(
        "list: last page",
        "&page_size=2&page=3",
        status(200)
        + """pm.test("one result, no next", () => {
    const body = pm.response.json();
    pm.expect(body.results.map(r => r.latency_ms)).to.eql([10]);
    pm.expect(body.next).to.eql(null);
    pm.expect(body.previous).to.include("page=2");
});
""",
    ),
    list_request(
        "list: page past the end is 404",
        "&page_size=2&page=4",
        status(404)
        + 'pm.test("Invalid page.", () => pm.expect(pm.response.json().detail).to.eql("Invalid page."));\n',
    ),
    list_request("list: page 0 is a field error", "&page=0", field_error(400, "page")),
    list_request("list: page_size 0 is a field error", "&page_size=0", field_error(400, "page_size")),
    list_request(
        "list: page_size above 1000 is a field error", "&page_size=1001", field_error(400, "page_size")
    ),
    list_request("list: page_size text is a field error", "&page_size=ten", field_error(400, "page_size")),
    list_request("list: ordering by latency", "&ordering=latency_ms", ids_are("[10, 20, 30, 50, 70]")),
    list_request("list: ordering by -latency", "&ordering=-latency_ms", ids_are("[70, 50, 30, 20, 10]")),
    list_request(
        "list: ordering by two keys",
        "&ordering=endpoint,-latency_ms",
        ids_are("[50, 10, 20, 70, 30]"),
    ),
    list_request("list: unknown ordering is a field error", "&ordering=password", field_error(400, "ordering")),
    list_request("list: method is case-insensitive", "&method=get", ids_are("[30, 10]")),
    list_request("list: unknown method is a field error", "&method=TRACE", field_error(400, "method")),
    list_request("list: endpoint exact", "&endpoint=/api/v1/users", ids_are("[70, 30]")),
    list_request("list: endpoint is not a prefix match", "&endpoint=/api/v1", ids_are("[]")),
    list_request("list: status_code", "&status_code=500", ids_are("[70]")),
    list_request("list: status_code__in", "&status_code__in=200,201,204", ids_are("[20, 50, 10]")),
    list_request("list: status_code text is a field error", "&status_code=ok", field_error(400, "status_code")),
    list_request(
        "list: status_code__in with a bad code is a field error",
        "&status_code__in=200,abc",
        field_error(400, "status_code__in"),
    ),
    list_request(
        "list: time_after and time_before are inclusive",
        "&time_after=2025-12-11T08:00:00Z&time_before=2025-12-13T08:00:00Z",
        ids_are("[70, 30, 50]"),
    ),
    list_request(
        "list: date-only time_before covers that day",
        "&time_before=2025-12-11",
        ids_are("[50, 10]"),
    ),
    list_request("list: bad time_after is a field error", "&time_after=soon", field_error(400, "time_after")),
    list_request("list: latency bounds inclusive", "&latency_min=20&latency_max=50", ids_are("[20, 30, 50]")),
    list_request("list: latency_min text is a field error", "&latency_min=fast", field_error(400, "latency_min")),
    list_request("list: trace_id exact", "&trace_id=t-c-{{run}}", ids_are("[30]")),
    list_request("list: user_ref exact", "&user_ref=alice", ids_are("[30, 10]")),
    list_request("list: search one term", "&search=PAYMENTS", ids_are("[20]")),
    list_request(
        "list: search terms must all match",
        "&search=users%20t-d-{{run}}",
        ids_are("[70]"),
    ),
    list_request("list: search terms split on commas", "&search=orders,alice", ids_are("[10]")),
    list_request("list: unknown parameters are ignored", "&colour=blue", ids_are("[20, 70, 30, 50, 10]")),
]

# --- Bulk ingest ------------------------------------------------------------------------------


def ingest_event(**overrides: Any) -> dict[str, Any]:
    return event(**{"service": "{{ingest_svc}}", **overrides})


def ingest_count(expected: int, after: str) -> dict[str, Any]:
    return request(
        f"ingest: {expected} events stored after {after}",
        "GET",
        "/api/requests/?service={{ingest_svc}}&page_size=1",
        tests=status(200)
        + f'pm.test("count is {expected}", () => pm.expect(pm.response.json().count).to.eql({expected}));\n',
    )


def report(inserted: int, rejected: int, errors: int) -> str:
    return (
        f'pm.test("inserted {inserted}, rejected {rejected}, {errors} errors listed", () => {{\n'
        "    const body = pm.response.json();\n"
        f"    pm.expect(body.inserted).to.eql({inserted});\n"
        f"    pm.expect(body.rejected).to.eql({rejected});\n"
        f"    pm.expect(body.errors).to.have.lengthOf({errors});\n"
        "});\n"
    )


MIXED = [
    ingest_event(),
    ingest_event(status_code=700),
    "not an event",
    ingest_event(method="get", latency_ms=1),
    ingest_event(service="", latency_ms=-5),
]

INGEST = [
    request(
        "ingest: a JSON array",
        "POST",
        "/api/requests/ingest/",
        body=[ingest_event(), ingest_event(method="post", status_code=201)],
        tests=status(200) + report(2, 0, 0),
    ),
    request(
        "ingest: an {events: [...]} object",
        "POST",
        "/api/requests/ingest/",
        body={"events": [ingest_event(latency_ms=5)]},
        tests=status(200) + report(1, 0, 0),
    ),
    request(
        "ingest: without trailing slash",
        "POST",
        "/api/requests/ingest",
        body=[ingest_event()],
        tests=status(200) + report(1, 0, 0),
    ),
    ingest_count(4, "three valid requests"),
    request(
        "ingest: invalid events are skipped and reported in order",
        "POST",
        "/api/requests/ingest/",
        body=MIXED,
        tests=status(200)
        + report(2, 3, 3)
        + """pm.test("errors name the index and the field", () => {
    const errors = pm.response.json().errors;
    pm.expect(errors.map(e => e.index)).to.eql([1, 2, 4]);
    pm.expect(errors[0].errors.status_code[0]).to.eql(
        "status_code must be a valid HTTP status (100..599).");
    pm.expect(errors[1].errors.non_field_errors).to.eql(["Each event must be a JSON object."]);
    pm.expect(errors[2].errors).to.have.property("service");
    pm.expect(errors[2].errors).to.have.property("latency_ms");
});
""",
    ),
    ingest_count(6, "a mixed request"),
    request(
        "ingest: max_errors limits the list, not the count",
        "POST",
        "/api/requests/ingest/?max_errors=1",
        body=MIXED,
        tests=status(200)
        + report(2, 3, 1)
        + 'pm.test("first error listed", () => pm.expect(pm.response.json().errors[0].index).to.eql(1));\n',
    ),
    request(
        "ingest: max_errors=0 gives counts only",
        "POST",
        "/api/requests/ingest/?max_errors=0",
        body=MIXED,
        tests=status(200) + report(2, 3, 0),
    ),
    ingest_count(10, "max_errors variants"),
    request(
        "ingest: strict with an invalid event stores nothing",
        "POST",
        "/api/requests/ingest/?strict=true",
        body=MIXED,
        tests=status(400)
        + report(0, 5, 3)
        + 'pm.test("detail", () => pm.expect(pm.response.json().detail).to.be.a("string").and.not.empty);\n',
    ),
    ingest_count(10, "the strict refusal"),
    request(
        "ingest: strict with only valid events",
        "POST",
        "/api/requests/ingest/?strict=1",
        body=[ingest_event(), ingest_event()],
        tests=status(200) + report(2, 0, 0),
    ),
    request(
        "ingest: empty list",
        "POST",
        "/api/requests/ingest/",
        body=[],
        tests=status(200)
        + 'pm.test("nothing", () => pm.expect(pm.response.json()).to.eql({inserted: 0, rejected: 0, errors: []}));\n',
    ),
    request(
        "ingest: more events than max_events is 413, nothing stored",
        "POST",
        "/api/requests/ingest/?max_events=2",
        body=[ingest_event(), ingest_event(), ingest_event()],
        tests=status(413)
        + """pm.test("names the count and the limit", () => {
    const body = pm.response.json();
    pm.expect(body.detail).to.eql("Too many events: got 3, max allowed is 2.");
    pm.expect(body.max_events).to.eql(2);
});
""",
    ),
    ingest_count(12, "the 413"),
    request(
        "ingest: batch_size=1 stores everything",
        "POST",
        "/api/requests/ingest/?batch_size=1",
        body=[ingest_event(), ingest_event(), ingest_event()],
        tests=status(200) + report(3, 0, 0),
    ),
    request(
        "ingest: a batch_size above max_events is clamped",
        "POST",
        "/api/requests/ingest/?batch_size=100000000&max_events=10",
        body=[ingest_event()],
        tests=status(200) + report(1, 0, 0),
    ),
    ingest_count(16, "batch_size variants"),
    request(
        "ingest: gzip body",
        "POST",
        "/api/requests/ingest/",
        file="fixtures/events.json.gz",
        headers=[JSON, {"key": "Content-Encoding", "value": "gzip"}],
        tests=status(200) + report(3, 0, 0),
    ),
    request("ingest: max_events=0 is a field error", "POST", "/api/requests/ingest/?max_events=0",
            body=[], tests=field_error(400, "max_events")),
    request("ingest: max_events above the setting is a field error", "POST",
            "/api/requests/ingest/?max_events=100000000", body=[], tests=field_error(400, "max_events")),
    request("ingest: max_errors text is a field error", "POST", "/api/requests/ingest/?max_errors=all",
            body=[], tests=field_error(400, "max_errors")),
    request("ingest: max_errors negative is a field error", "POST", "/api/requests/ingest/?max_errors=-1",
            body=[], tests=field_error(400, "max_errors")),
    request("ingest: batch_size=0 is a field error", "POST", "/api/requests/ingest/?batch_size=0",
            body=[], tests=field_error(400, "batch_size")),
    request("ingest: strict=maybe is a field error", "POST", "/api/requests/ingest/?strict=maybe",
            body=[], tests=field_error(400, "strict")),
    request("ingest: an object without events is 400", "POST", "/api/requests/ingest/",
            body={"items": []}, tests=detail(400)),
    request("ingest: events that are not a list is 400", "POST", "/api/requests/ingest/",
            body={"events": "many"}, tests=detail(400)),
    request("ingest: a string body is 400", "POST", "/api/requests/ingest/",
            raw='"events"', tests=detail(400)),
    request("ingest: malformed JSON is 400 with the reason", "POST", "/api/requests/ingest/",
            raw="[{", tests=detail(400, "JSON")),
    request("ingest: wrong content type is 415", "POST", "/api/requests/ingest/", raw="a,b,c",
            headers=[{"key": "Content-Type", "value": "text/csv"}], tests=detail(415)),
    request(
        "ingest: a body over the size limit is 413",
        "POST",
        "/api/requests/ingest/",
        raw="{{big_body}}",
        prerequest="""
// One byte more than the server's APM_MAX_BODY_BYTES (the environment's max_body_bytes).
const limit = Number(pm.environment.get("max_body_bytes") || 131072);
pm.variables.set("big_body", "[" + " ".repeat(limit) + "]");
""",
        tests=detail(413),
    ),
    request("ingest: GET is 405", "GET", "/api/requests/ingest/", tests=status(405)),
    # The gzip fixture's events belong to the service "newman-gzip", not to this run's.
    ingest_count(16, "the refused requests"),
]

# --- Analytics --------------------------------------------------------------------------------

AN = "{{an_svc}}"
ANALYTICS_EVENTS = [
    event(service=AN, time="2025-12-14T10:05:00Z", endpoint="/orders", method="GET",
          status_code=200, latency_ms=10),
    event(service=AN, time="2025-12-14T10:30:00Z", endpoint="/orders", method="GET",
          status_code=500, latency_ms=30),
    event(service=AN, time="2025-12-14T10:45:00Z", endpoint="/orders", method="POST",
          status_code=404, latency_ms=20),
    event(service=AN, time="2025-12-14T11:15:00Z", endpoint="/orders", method="GET",
          status_code=200, latency_ms=40),
    event(service=AN, time="2025-12-14T11:20:00Z", endpoint="/users", method="GET",
          status_code=503, latency_ms=100),
    event(service=AN, time="2025-12-13T09:00:00Z", endpoint="/orders", method="GET",
          status_code=200, latency_ms=50),
]
WINDOW = "start=2025-12-13&end=2025-12-14"  # date-only end: the whole of the 14th

HOURLY_ROWS = [
    ("2025-12-14T11:00:00Z", "/orders", 1, 0, 40.0, 40),
    ("2025-12-14T11:00:00Z", "/users", 1, 1, 100.0, 100),
    ("2025-12-14T10:00:00Z", "/orders", 3, 1, 20.0, 30),
]
DAILY_ROWS = [
    ("2025-12-14T00:00:00Z", "/orders", 4, 1, 25.0, 40, 38.5),
    ("2025-12-14T00:00:00Z", "/users", 1, 1, 100.0, 100, 100.0),
    ("2025-12-13T00:00:00Z", "/orders", 1, 0, 50.0, 50, 50.0),
]


def rows_test(rows: list[tuple], daily: bool) -> str:
    expected = [
        {
            "bucket": r[0], "endpoint": r[1], "hits": r[2], "errors": r[3],
            "avg_latency_ms": r[4], "max_latency_ms": r[5],
            **({"p95_latency_ms": r[6]} if daily else {}),
        }
        for r in rows
    ]
    keys = ["bucket", "service", "endpoint", "hits", "errors", "avg_latency_ms", "max_latency_ms"]
    if daily:
        keys.append("p95_latency_ms")
    return (
        status(200)
        + f"""pm.test("rows, newest bucket first, then endpoint", () => {{
    const rows = pm.response.json();
    const expected = {json.dumps(expected)};
    pm.expect(rows).to.be.an("array").with.lengthOf(expected.length);
    rows.forEach((row, i) => {{
        pm.expect(row).to.have.all.keys({json.dumps(keys)});
        pm.expect(row.service).to.eql(pm.collectionVariables.get("an_svc"));
        for (const key of Object.keys(expected[i])) {{
            if (typeof expected[i][key] === "number" && !Number.isInteger(expected[i][key])) {{
                pm.expect(row[key], key).to.be.closeTo(expected[i][key], 1e-9);
            }} else {{
                pm.expect(row[key], key).to.eql(expected[i][key]);
            }}
        }}
    }});
}});
"""
    )


def kpis(name: str, query: str, expected: dict[str, Any]) -> dict[str, Any]:
    return request(
        name,
        "GET",
        f"/api/requests/kpis/?service={AN}&{query}",
        tests=status(200)
        + f"""pm.test("exact figures", () => {{
    const body = pm.response.json();
    const expected = {json.dumps(expected)};
    pm.expect(body).to.have.all.keys("hits", "errors", "error_rate", "avg_latency_ms",
        "p95_latency_ms", "max_latency_ms", "source");
    pm.expect(["hourly", "daily", "raw"]).to.include(body.source);
    for (const key of Object.keys(expected)) {{
        if (expected[key] === null || Number.isInteger(expected[key])) {{
            pm.expect(body[key], key).to.eql(expected[key]);
        }} else {{
            pm.expect(body[key], key).to.be.closeTo(expected[key], 1e-9);
        }}
    }}
}});
""",
    )


ALL_KPIS = {
    "hits": 6, "errors": 2, "error_rate": 2 / 6, "avg_latency_ms": 250 / 6,
    "p95_latency_ms": 87.5, "max_latency_ms": 100,
}


def top(
    name: str,
    query: str,
    expected: list[tuple],
    *,
    source: str | None = None,
    path: str = "/api/requests/top-endpoints/",
) -> dict[str, Any]:
    rows = [
        {"endpoint": r[0], "hits": r[1], "errors": r[2], "error_rate": r[3], "p95_latency_ms": r[4]}
        for r in expected
    ]
    source_check = (
        f'    pm.expect(body.source).to.eql("{source}");\n'
        if source
        else '    pm.expect(["hourly", "daily", "raw"]).to.include(body.source);\n'
    )
    return request(
        name,
        "GET",
        f"{path}?service={AN}&{WINDOW}{query}",
        tests=status(200)
        + f"""pm.test("ranked rows", () => {{
    const body = pm.response.json();
    const expected = {json.dumps(rows)};
    pm.expect(body).to.have.all.keys("source", "results");
{source_check}    pm.expect(body.results).to.have.lengthOf(expected.length);
    body.results.forEach((row, i) => {{
        pm.expect(row).to.have.all.keys("service", "endpoint", "hits", "errors", "error_rate",
            "avg_latency_ms", "p95_latency_ms", "max_latency_ms");
        for (const key of Object.keys(expected[i])) {{
            const want = expected[i][key];
            if (want === null || Number.isInteger(want) || typeof want === "string") {{
                pm.expect(row[key], key).to.eql(want);
            }} else {{
                pm.expect(row[key], key).to.be.closeTo(want, 1e-9);
            }}
        }}
    }});
}});
""",
    )


ANALYTICS = [
    request(
        "setup: ingest the analytics events",
        "POST",
        "/api/requests/ingest/",
        body=ANALYTICS_EVENTS,
        tests=status(200) + report(6, 0, 0),
    ),
    request(
        "hourly: rows for a day, real-time",
        "GET",
        f"/api/requests/hourly/?service={AN}&start=2025-12-14T00:00:00Z&end=2025-12-15T00:00:00Z",
        tests=rows_test(HOURLY_ROWS, daily=False),
    ),
    request(
        "hourly: without trailing slash",
        "GET",
        f"/api/requests/hourly?service={AN}&start=2025-12-14T00:00:00Z&end=2025-12-15T00:00:00Z",
        tests=rows_test(HOURLY_ROWS, daily=False),
    ),
    request(
        "hourly: date-only end includes that day",
        "GET",
        f"/api/requests/hourly/?service={AN}&start=2025-12-14&end=2025-12-14",
        tests=rows_test(HOURLY_ROWS, daily=False),
    ),
    request(
        "hourly: a start inside a bucket returns the whole bucket",
        "GET",
        f"/api/requests/hourly/?service={AN}&start=2025-12-14T10:40:00Z&end=2025-12-14T11:00:00Z",
        tests=rows_test(HOURLY_ROWS[2:], daily=False),
    ),
    request(
        "hourly: endpoint filter",
        "GET",
        f"/api/requests/hourly/?service={AN}&endpoint=/users&start=2025-12-14&end=2025-12-14",
        tests=rows_test(HOURLY_ROWS[1:2], daily=False),
    ),
    request(
        "hourly: limit",
        "GET",
        f"/api/requests/hourly/?service={AN}&start=2025-12-14&end=2025-12-14&limit=1",
        tests=rows_test(HOURLY_ROWS[:1], daily=False),
    ),
    request(
        "hourly: default window (last 24 hours) is a list",
        "GET",
        f"/api/requests/hourly/?service={AN}",
        tests=status(200) + 'pm.test("empty list", () => pm.expect(pm.response.json()).to.eql([]));\n',
    ),
    request("hourly: limit 0 is a field error", "GET",
            "/api/requests/hourly/?limit=0", tests=field_error(400, "limit")),
    request("hourly: limit above 5000 is a field error", "GET",
            "/api/requests/hourly/?limit=5001", tests=field_error(400, "limit")),
    request("hourly: start after end is a field error on start", "GET",
            "/api/requests/hourly/?start=2025-12-15&end=2025-12-14T00:00:00Z",
            tests=field_error(400, "start")),
    request("hourly: bad start is a field error", "GET",
            "/api/requests/hourly/?start=last-week", tests=field_error(400, "start")),
    request("hourly: bad end is a field error", "GET",
            "/api/requests/hourly/?end=2025-13-45", tests=field_error(400, "end")),
    request("hourly: POST is 405", "POST", "/api/requests/hourly/", body={}, tests=status(405)),
    request(
        "daily: rows with exact p95",
        "GET",
        f"/api/requests/daily/?service={AN}&{WINDOW}",
        tests=rows_test(DAILY_ROWS, daily=True),
    ),
    request(
        "daily: without trailing slash",
        "GET",
        f"/api/requests/daily?service={AN}&{WINDOW}",
        tests=rows_test(DAILY_ROWS, daily=True),
    ),
    request(
        "daily: endpoint filter and limit",
        "GET",
        f"/api/requests/daily/?service={AN}&endpoint=/orders&{WINDOW}&limit=1",
        tests=rows_test(DAILY_ROWS[:1], daily=True),
    ),
    request("daily: limit above 5000 is a field error", "GET",
            "/api/requests/daily/?limit=9999", tests=field_error(400, "limit")),
    request("daily: start after end is a field error on start", "GET",
            "/api/requests/daily/?start=2025-12-20&end=2025-12-14", tests=field_error(400, "start")),
    kpis("kpis: exact over the window", WINDOW, ALL_KPIS),
    request(
        "kpis: without trailing slash",
        "GET",
        f"/api/requests/kpis?service={AN}&{WINDOW}",
        tests=status(200) + 'pm.test("hits", () => pm.expect(pm.response.json().hits).to.eql(6));\n',
    ),
    kpis("kpis: granularity hourly gives the same figures", WINDOW + "&granularity=hourly", ALL_KPIS),
    kpis("kpis: granularity daily gives the same figures", WINDOW + "&granularity=daily", ALL_KPIS),
    kpis(
        "kpis: a window with partial hours",
        "start=2025-12-14T10:10:00Z&end=2025-12-14T11:16:00Z",
        {"hits": 3, "errors": 1, "error_rate": 1 / 3, "avg_latency_ms": 30.0,
         "p95_latency_ms": 39.0, "max_latency_ms": 40},
    ),
    kpis(
        "kpis: with_p95=false skips the p95 only",
        WINDOW + "&with_p95=false",
        {**ALL_KPIS, "p95_latency_ms": None},
    ),
    kpis(
        "kpis: error_from=400 counts 4xx too",
        WINDOW + "&error_from=400",
        {**ALL_KPIS, "errors": 3, "error_rate": 0.5},
    ),
    kpis(
        "kpis: error_from=501 (not a hundred)",
        WINDOW + "&error_from=501",
        {**ALL_KPIS, "errors": 1, "error_rate": 1 / 6},
    ),
    kpis(
        "kpis: method is case-insensitive",
        WINDOW + "&method=get",
        {"hits": 5, "errors": 2, "error_rate": 0.4, "avg_latency_ms": 46.0,
         "p95_latency_ms": 90.0, "max_latency_ms": 100},
    ),
    kpis(
        "kpis: endpoint filter",
        WINDOW + "&endpoint=/users",
        {"hits": 1, "errors": 1, "error_rate": 1.0, "avg_latency_ms": 100.0,
         "p95_latency_ms": 100.0, "max_latency_ms": 100},
    ),
    kpis(
        "kpis: no events gives zeros and nulls",
        "start=2020-01-01&end=2020-01-02",
        {"hits": 0, "errors": 0, "error_rate": 0.0, "avg_latency_ms": None,
         "p95_latency_ms": None, "max_latency_ms": None},
    ),
    request("kpis: error_from below 100 is a field error", "GET",
            "/api/requests/kpis/?error_from=99", tests=field_error(400, "error_from")),
    request("kpis: error_from text is a field error", "GET",
            "/api/requests/kpis/?error_from=five", tests=field_error(400, "error_from")),
    request("kpis: unknown granularity is a field error", "GET",
            "/api/requests/kpis/?granularity=weekly", tests=field_error(400, "granularity")),
    request("kpis: with_p95 not a boolean is a field error", "GET",
            "/api/requests/kpis/?with_p95=often", tests=field_error(400, "with_p95")),
    request("kpis: unknown method is a field error", "GET",
            "/api/requests/kpis/?method=FETCH", tests=field_error(400, "method")),
    request("kpis: start after end is a field error on start", "GET",
            "/api/requests/kpis/?start=2025-12-15T00:00:00Z&end=2025-12-14T00:00:00Z",
            tests=field_error(400, "start")),
    request("kpis: POST is 405", "POST", "/api/requests/kpis/", body={}, tests=status(405)),
    top(
        "top-endpoints: by hits (default), p95 null unless asked",
        "",
        [("/orders", 5, 1, 0.2, None), ("/users", 1, 1, 1.0, None)],
    ),
    top(
        "top-endpoints: without trailing slash",
        "",
        [("/orders", 5, 1, 0.2, None), ("/users", 1, 1, 1.0, None)],
        path="/api/requests/top-endpoints",
    ),
    top(
        "top-endpoints: with_p95",
        "&with_p95=true",
        [("/orders", 5, 1, 0.2, 48.0), ("/users", 1, 1, 1.0, 100.0)],
    ),
    top(
        "top-endpoints: sort by p95 computes it",
        "&sort_by=p95_latency_ms",
        [("/users", 1, 1, 1.0, 100.0), ("/orders", 5, 1, 0.2, 48.0)],
    ),
    top(
        "top-endpoints: sort by error_rate",
        "&sort_by=error_rate",
        [("/users", 1, 1, 1.0, None), ("/orders", 5, 1, 0.2, None)],
    ),
    top(
        "top-endpoints: errors ties break by endpoint",
        "&sort_by=errors",
        [("/orders", 5, 1, 0.2, None), ("/users", 1, 1, 1.0, None)],
    ),
    top(
        "top-endpoints: ascending",
        "&sort_by=hits&direction=asc",
        [("/users", 1, 1, 1.0, None), ("/orders", 5, 1, 0.2, None)],
    ),
    top(
        "top-endpoints: error_from=400 and method",
        "&error_from=400&method=POST",
        [("/orders", 1, 1, 1.0, None)],
    ),
    top("top-endpoints: limit", "&limit=1", [("/orders", 5, 1, 0.2, None)]),
    request("top-endpoints: limit above 200 is a field error", "GET",
            "/api/requests/top-endpoints/?limit=201", tests=field_error(400, "limit")),
    request("top-endpoints: unknown sort_by is a field error", "GET",
            "/api/requests/top-endpoints/?sort_by=name", tests=field_error(400, "sort_by")),
    request("top-endpoints: unknown direction is a field error", "GET",
            "/api/requests/top-endpoints/?direction=sideways", tests=field_error(400, "direction")),
    request("top-endpoints: with_p95=perhaps is a field error", "GET",
            "/api/requests/top-endpoints/?with_p95=perhaps", tests=field_error(400, "with_p95")),
    request("top-endpoints: DELETE is 405", "DELETE", "/api/requests/top-endpoints/",
            tests=status(405)),
]

# --- Metrics ----------------------------------------------------------------------------------

METRICS = [
    request(
        "metrics: Prometheus text by route template",
        "GET",
        "/metrics",
        tests=status(200)
        + """pm.test("route templates, never raw ids", () => {
    const text = pm.response.text();
    pm.expect(pm.response.headers.get("Content-Type")).to.include("text/plain");
    pm.expect(text).to.include("apm_requests_total");
    pm.expect(text).to.include('path="/api/requests/{request_id}"');
    pm.expect(text).to.not.include('path="/api/requests/987654321987"');
    pm.expect(text).to.match(/apm_ingest_events_total\\{outcome="inserted"\\} [1-9]/);
    pm.expect(text).to.match(/apm_ingest_events_total\\{outcome="rejected"\\} [1-9]/);
});
""",
    ),
]

AUTH = """
// With API keys enabled on the server, set the environment's api_key (a key that is both an
// ingest and a read key); without one, no header is sent.
const key = pm.environment.get("api_key");
if (key) {
    pm.request.headers.upsert({key: "Authorization", value: "Bearer " + key});
}
"""


def collection() -> dict[str, Any]:
    return {
        "info": {
            "name": "apm",
            "description": (
                "Every endpoint of the apm API contract with its error cases. Generated by "
                "postman/build_collection.py; run with `make smoke` or `newman run`."
            ),
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "event": [_script("prerequest", AUTH)],
        "variable": [
            {"key": name, "value": ""}
            for name in ("run", "svc", "list_svc", "ingest_svc", "an_svc", "request_id")
        ],
        "item": [
            folder("health", "GET /api/health/ (spec 2.1)", HEALTH),
            folder("crud", "/api/requests/ and /api/requests/{id}/ (spec 2.2)", CRUD),
            folder("list", "GET /api/requests/ filters, ordering, pages (spec 2.2)", LIST),
            folder("ingest", "POST /api/requests/ingest/ (spec 2.3)", INGEST),
            folder(
                "analytics",
                "hourly, daily, kpis, top-endpoints (spec 2.4-2.7) over known events",
                ANALYTICS,
            ),
            folder("metrics", "GET /metrics (Prometheus)", METRICS),
        ],
    }


def render() -> str:
    return json.dumps(collection(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(HERE.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
