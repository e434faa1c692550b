"""The Postman collection: generated, in sync, and covering every endpoint of the contract."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POSTMAN = ROOT / "postman"


def _builder():
    spec = importlib.util.spec_from_file_location("build_collection", POSTMAN / "build_collection.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requests(node: dict) -> list[dict]:
    if "request" in node:
        return [node]
    return [leaf for child in node.get("item", []) for leaf in _requests(child)]


def _collection() -> dict:
    return json.loads((POSTMAN / "apm.postman_collection.json").read_text())


def test_collection_file_is_what_the_builder_writes() -> None:
    assert (POSTMAN / "apm.postman_collection.json").read_text() == _builder().render(), (
        "run: python postman/build_collection.py"
    )


def _template(url: str) -> str:
    path = url.removeprefix("{{base_url}}").split("?", 1)[0]
    path = re.sub(r"/(\{\{request_id\}\}|\d+|abc)(/|$)", r"/{id}\2", path)
    return path if path.endswith("/") else path + "/"


def test_every_endpoint_of_the_contract_is_exercised() -> None:
    seen = {(item["request"]["method"], _template(item["request"]["url"]))
            for item in _requests(_collection())}
    wanted = {
        ("GET", "/api/health/"),
        ("GET", "/api/requests/"),
        ("POST", "/api/requests/"),
        ("GET", "/api/requests/{id}/"),
        ("PUT", "/api/requests/{id}/"),
        ("PATCH", "/api/requests/{id}/"),
        ("DELETE", "/api/requests/{id}/"),
        ("POST", "/api/requests/ingest/"),
        ("GET", "/api/requests/hourly/"),
        ("GET", "/api/requests/daily/"),
        ("GET", "/api/requests/kpis/"),
        ("GET", "/api/requests/top-endpoints/"),
        ("GET", "/metrics/"),
    }
    assert wanted - seen == set()


def test_every_error_status_of_the_contract_is_asserted() -> None:
    scripts = "\n".join(
        line
        for item in _requests(_collection())
        for event in item["event"]
        if event["listen"] == "test"
        for line in event["script"]["exec"]
    )
    for code in (200, 201, 204, 400, 404, 405, 413, 415):
        assert f"pm.response.to.have.status({code})" in scripts, code


def test_every_request_has_assertions_and_a_unique_name() -> None:
    items = _requests(_collection())
    assert len(items) > 100
    names = [item["name"] for item in items]
    assert len(names) == len(set(names))
    for item in items:
        tests = [e for e in item["event"] if e["listen"] == "test"]
        assert tests and "pm.test(" in "\n".join(tests[0]["script"]["exec"]), item["name"]
        assert item["request"]["url"].startswith("{{base_url}}/")


def test_query_parameters_of_the_contract_appear() -> None:
    urls = " ".join(item["request"]["url"] for item in _requests(_collection()))
    for parameter in (
        "db=", "page=", "page_size=", "ordering=", "service=", "endpoint=", "trace_id=",
        "user_ref=", "method=", "status_code=", "status_code__in=", "time_after=",
        "time_before=", "latency_min=", "latency_max=", "search=", "max_events=",
        "max_errors=", "batch_size=", "strict=", "start=", "end=", "limit=", "error_from=",
        "granularity=", "sort_by=", "direction=", "with_p95=",
    ):
        assert parameter in urls, parameter


def test_environment_and_pinned_newman() -> None:
    environment = json.loads((POSTMAN / "apm.postman_environment.json").read_text())
    keys = {value["key"] for value in environment["values"]}
    assert {"base_url", "max_body_bytes", "api_key"} <= keys
    package = json.loads((POSTMAN / "package.json").read_text())
    pinned = package["devDependencies"]["newman"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    lock = json.loads((POSTMAN / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/newman"]["version"] == pinned
    smoke = (ROOT / "scripts" / "smoke.sh").read_text()
    limit = next(v["value"] for v in environment["values"] if v["key"] == "max_body_bytes")
    assert f"MAX_BODY_BYTES={limit}" in smoke
