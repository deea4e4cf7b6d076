"""A local stand-in for the BigQuery REST API, for the real google-cloud-bigquery client.

It answers the calls the pipeline makes (datasets.get/insert, tables.get/insert/patch/
delete, jobs.insert through the upload endpoints for loads and the plain one for queries,
jobs.get, jobs.getQueryResults), records every request for the tests to assert on, and
keeps the data in an in-memory DuckDB so that queries have real answers: job SQL is
BigQuery dialect, run through sqlglot like any BigQuery emulator would. It is a test
double at the wire: nothing of the pipeline is patched.

Failures are injected per request (``deny``: an HTTP error) or per job (``fail_job``: the
job ends with an ``errorResult``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlglot
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

_DUCK_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "INTEGER": "BIGINT",
    "FLOAT64": "DOUBLE",
    "FLOAT": "DOUBLE",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
}
# What the API answers for types created with their standard SQL names.
_LEGACY = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


@dataclass
class Recorded:
    method: str
    path: str  # without the /bigquery/v2 or /upload/bigquery/v2 prefix
    args: dict[str, str]
    body: Any  # parsed JSON (for a multipart upload: its metadata part)
    upload: bytes | None = None  # the data part of an upload
    upload_type: str | None = None  # multipart / resumable


@dataclass
class _Failure:
    kind: str  # load, query
    reason: str
    message: str
    match: str
    times: int
    midway: str | None = None


@dataclass
class _Denial:
    method: str
    path: re.Pattern[str]
    status: int
    reason: str
    message: str
    times: int


@dataclass
class _Job:
    resource: dict
    schema: list[dict] | None = None
    rows: list[dict] = field(default_factory=list)


def _error_body(status: int, reason: str, message: str) -> dict:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"reason": reason, "message": message, "domain": "global"}],
        }
    }


def _qualified(project: str, dataset: str, table: str) -> str:
    return f'"{project}"."{dataset}"."{table}"'


class FakeBigQuery:
    """The fake server's state and behaviour; ``url`` is what PIPELINE_BIGQUERY_ENDPOINT
    points at."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.url = server.url_for("").rstrip("/")
        self.requests: list[Recorded] = []
        self.datasets: dict[tuple[str, str], dict] = {}
        self.tables: dict[tuple[str, str, str], dict] = {}
        self.jobs: dict[tuple[str, str], _Job] = {}
        self.failures: list[_Failure] = []
        self.denials: list[_Denial] = []
        self.sessions: dict[str, dict] = {}
        self.hanging: list[str] = []  # load destinations whose jobs never finish
        self.db = duckdb.connect()
        self.db.execute("SET TimeZone = 'UTC'")
        self.projects: set[str] = set()
        server.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    # ------------------------------------------------------------------ test helpers

    def deny(
        self,
        method: str,
        path: str,
        *,
        status: int = 403,
        reason: str = "accessDenied",
        message: str = "Access Denied",
        times: int = 1_000_000,
    ) -> None:
        """Answer requests matching ``method`` and the ``path`` regex with an HTTP error."""
        self.denials.append(_Denial(method, re.compile(path), status, reason, message, times))

    def fail_job(
        self,
        kind: str,
        reason: str,
        message: str,
        *,
        match: str = "",
        times: int = 1,
        midway: str | None = None,
    ) -> None:
        """Let the next ``times`` jobs of ``kind`` (load/query) whose SQL or destination
        contains ``match`` end DONE with this errorResult: without running, or, for a query
        with ``midway`` (a regex), after running its statements up to the first whose
        DuckDB translation matches it (a transaction is then rolled back)."""
        self.failures.append(_Failure(kind, reason, message, match, times, midway))

    def hang_load(self, match: str) -> None:
        """Load jobs into a table whose id contains ``match`` stay RUNNING until
        cancelled."""
        self.hanging.append(match)

    def of(self, method: str, pattern: str) -> list[Recorded]:
        """The recorded requests with this method whose path matches ``pattern``."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def job_inserts(self, kind: str) -> list[Recorded]:
        """Recorded jobs.insert requests of ``kind`` (load or query), in order."""
        inserts = self.of("POST", r"^/projects/[^/]+/jobs$")
        return [r for r in inserts if kind in (r.body or {}).get("configuration", {})]

    def queries(self) -> list[str]:
        return [r.body["configuration"]["query"]["query"] for r in self.job_inserts("query")]

    def rows(self, project: str, dataset: str, table: str, order: str = "") -> list[tuple]:
        """The stored rows of a table (for assertions)."""
        sql = f"SELECT * FROM {_qualified(project, dataset, table)}"
        return self.sql(sql + (f" ORDER BY {order}" if order else ""))

    def sql(self, statement: str) -> list[tuple]:
        """Run DuckDB SQL on the stored data (for assertions)."""
        table = self.db.sql(statement).to_arrow_table()
        return [tuple(row.values()) for row in table.to_pylist()]

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: Request) -> Response:
        path = request.path
        upload_type = None
        if path.startswith("/upload/bigquery/v2"):
            path, upload_type = path.removeprefix("/upload/bigquery/v2"), "upload"
        elif path.startswith("/bigquery/v2"):
            path = path.removeprefix("/bigquery/v2")
        elif path.startswith("/resumable/"):
            return self._resumable_chunk(request)
        else:
            return self._json(404, _error_body(404, "notFound", f"no route {path}"))
        args = dict(request.args)
        raw = request.get_data()
        body: Any = None
        upload = None
        if upload_type and args.get("uploadType") == "multipart":
            body, upload = self._multipart(request, raw)
            upload_type = "multipart"
        elif upload_type:
            upload_type = "resumable"
            body = json.loads(raw or b"{}")
        elif raw:
            body = json.loads(raw)
        record = Recorded(request.method, path, args, body, upload, upload_type)
        self.requests.append(record)
        for denial in self.denials:
            if denial.times and denial.method == request.method and denial.path.search(path):
                denial.times -= 1
                return self._json(
                    denial.status, _error_body(denial.status, denial.reason, denial.message)
                )
        try:
            return self._route(request, record)
        except _HttpError as exc:
            return self._json(exc.status, _error_body(exc.status, exc.reason, exc.message))

    def _route(self, request: Request, r: Recorded) -> Response:
        m = request.method
        if m == "POST" and (g := re.fullmatch(r"/projects/([^/]+)/datasets", r.path)):
            return self._create_dataset(g[1], r.body)
        if m == "GET" and (g := re.fullmatch(r"/projects/([^/]+)/datasets/([^/]+)", r.path)):
            return self._json(200, self._dataset(g[1], g[2]))
        if m == "POST" and (
            g := re.fullmatch(r"/projects/([^/]+)/datasets/([^/]+)/tables", r.path)
        ):
            return self._create_table(g[1], g[2], r.body)
        if g := re.fullmatch(r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", r.path):
            key = (g[1], g[2], g[3])
            if m == "GET":
                return self._json(200, self._table(key))
            if m in ("PATCH", "PUT"):
                return self._patch_table(key, r.body, request.headers.get("If-Match"))
            if m == "DELETE":
                return self._delete_table(key, request.args)
        if re.fullmatch(r"/projects/[^/]+/datasets/[^/]+/tables/[^/]+/insertAll", r.path):
            raise _HttpError(400, "invalid", "streaming inserts are refused by this fake")
        if m == "POST" and (g := re.fullmatch(r"/projects/([^/]+)/jobs", r.path)):
            if r.upload_type == "resumable":
                return self._start_resumable(g[1], r.body)
            if r.upload_type == "multipart":
                return self._json(200, self._load(g[1], r.body, r.upload or b""))
            return self._json(200, self._query(g[1], r.body))
        if m == "GET" and (g := re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)", r.path)):
            return self._json(200, self._job(g[1], g[2]).resource)
        if m == "POST" and (g := re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)/cancel", r.path)):
            job = self._job(g[1], g[2])
            job.resource = {**job.resource, "status": {"state": "DONE"}}
            return self._json(200, {"kind": "bigquery#jobCancelResponse", "job": job.resource})
        if m == "GET" and (g := re.fullmatch(r"/projects/([^/]+)/queries/([^/]+)", r.path)):
            return self._json(200, self._results(g[1], g[2], request.args))
        raise _HttpError(404, "notFound", f"no route {m} {r.path}")

    @staticmethod
    def _json(status: int, body: Any, headers: dict | None = None) -> Response:
        return Response(
            json.dumps(body), status=status, headers=headers, content_type="application/json"
        )

    @staticmethod
    def _multipart(request: Request, raw: bytes) -> tuple[Any, bytes]:
        boundary = re.search(r'boundary="?([^";]+)"?', request.headers["Content-Type"])[1]
        parts = raw.split(b"--" + boundary.encode())
        metadata_part, data_part = parts[1], parts[2]
        metadata = metadata_part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
        data = data_part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
        return json.loads(metadata), data

    # ------------------------------------------------------------------ datasets, tables

    def _ensure_project(self, project: str) -> None:
        if project not in self.projects:
            self.db.execute(f"ATTACH ':memory:' AS \"{project}\"")
            self.projects.add(project)

    def _dataset(self, project: str, dataset: str) -> dict:
        if (project, dataset) not in self.datasets:
            raise _HttpError(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return self.datasets[(project, dataset)]

    def _create_dataset(self, project: str, body: dict) -> Response:
        dataset = body["datasetReference"]["datasetId"]
        if (project, dataset) in self.datasets:
            raise _HttpError(409, "duplicate", f"Already Exists: Dataset {project}:{dataset}")
        self._ensure_project(project)
        self.db.execute(f'CREATE SCHEMA "{project}"."{dataset}"')
        resource = {**body, "id": f"{project}:{dataset}", "etag": uuid.uuid4().hex}
        self.datasets[(project, dataset)] = resource
        return self._json(200, resource)

    def _table(self, key: tuple[str, str, str]) -> dict:
        if key not in self.tables:
            raise _HttpError(404, "notFound", f"Not found: Table {key[0]}:{key[1]}.{key[2]}")
        return self.tables[key]

    def _create_table(self, project: str, dataset: str, body: dict) -> Response:
        self._dataset(project, dataset)
        key = (project, dataset, body["tableReference"]["tableId"])
        if key in self.tables:
            raise _HttpError(409, "duplicate", f"Already Exists: Table {key}")
        fields = body.get("schema", {}).get("fields", [])
        cols = ", ".join(f'"{f["name"]}" {_DUCK_TYPES[f["type"]]}' for f in fields)
        self.db.execute(f"CREATE TABLE {_qualified(*key)} ({cols})")
        self.tables[key] = self._table_resource(key, body)
        return self._json(200, self.tables[key])

    @staticmethod
    def _table_resource(key: tuple[str, str, str], body: dict) -> dict:
        resource = json.loads(json.dumps(body))
        for f in resource.get("schema", {}).get("fields", []):
            f["type"] = _LEGACY.get(f["type"], f["type"])
        resource.update(id=f"{key[0]}:{key[1]}.{key[2]}", etag=uuid.uuid4().hex, type="TABLE")
        return resource

    def _patch_table(self, key: tuple[str, str, str], body: dict, etag: str | None) -> Response:
        table = self._table(key)
        if etag and etag != table["etag"]:
            raise _HttpError(412, "conditionNotMet", "Precondition check failed.")
        if "schema" in body:
            old = {f["name"] for f in table["schema"]["fields"]}
            new = body["schema"]["fields"]
            dropped = old - {f["name"] for f in new}
            if dropped:
                raise _HttpError(
                    400, "invalid", f"Provided Schema does not match Table: field {dropped} missing"
                )
            for f in new:
                if f["name"] not in old:
                    self.db.execute(
                        f'ALTER TABLE {_qualified(*key)} ADD COLUMN "{f["name"]}" '
                        f"{_DUCK_TYPES[f['type']]}"
                    )
        resource = {**table, **body}
        self.tables[key] = self._table_resource(key, resource)
        return self._json(200, self.tables[key])

    def _delete_table(self, key: tuple[str, str, str], args: Any) -> Response:
        self._table(key)
        self.db.execute(f"DROP TABLE {_qualified(*key)}")
        del self.tables[key]
        return Response(status=204)

    # ------------------------------------------------------------------ jobs

    def _new_job(self, project: str, body: dict) -> dict:
        reference = {**body.get("jobReference", {}), "projectId": project}
        reference.setdefault("jobId", uuid.uuid4().hex)
        resource = {
            **body,
            "jobReference": reference,
            "id": f"{project}:{reference['jobId']}",
            "status": {"state": "RUNNING"},  # jobs.get reports DONE: the client polls once
            "statistics": {"creationTime": str(int(dt.datetime.now().timestamp() * 1000))},
        }
        return resource

    def _injected(self, kind: str, text: str) -> _Failure | None:
        for failure in self.failures:
            if failure.times and failure.kind == kind and failure.match in text:
                failure.times -= 1
                return failure
        return None

    def _finish(self, project: str, resource: dict, job: _Job, error: dict | None) -> dict:
        status = {"state": "DONE"}
        if error:
            status.update(errorResult=error, errors=[error])
        job.resource = {**resource, "status": status}
        self.jobs[(project, resource["jobReference"]["jobId"])] = job
        return {**resource}

    def _load(self, project: str, body: dict, data: bytes) -> dict:
        resource = self._new_job(project, body)
        load = body["configuration"]["load"]
        dest = load["destinationTable"]
        key = (dest["projectId"], dest["datasetId"], dest["tableId"])
        if any(match in ".".join(key) for match in self.hanging):
            job = _Job(resource)
            self.jobs[(project, resource["jobReference"]["jobId"])] = job
            return resource  # RUNNING, and jobs.get keeps saying so
        failure = self._injected("load", ".".join(key))
        if failure:
            error = {"reason": failure.reason, "message": failure.message}
            return self._finish(project, resource, _Job(resource), error)
        error = None
        try:
            self._run_load(key, load, data)
        except (duckdb.Error, ValueError, KeyError) as exc:
            error = {"reason": "invalid", "message": f"Error while reading data: {exc}"}
        return self._finish(project, resource, _Job(resource), error)

    def _run_load(self, key: tuple[str, str, str], load: dict, data: bytes) -> None:
        if load.get("sourceFormat") != "PARQUET":
            raise ValueError(f"this fake loads PARQUET only, not {load.get('sourceFormat')}")
        arrow = pq.read_table(io.BytesIO(data))
        fields = load["schema"]["fields"]
        if [f["name"] for f in fields] != arrow.column_names:
            raise ValueError(f"schema {fields} does not match the file's {arrow.column_names}")
        self._dataset(key[0], key[1])
        if key in self.tables and load.get("writeDisposition") == "WRITE_TRUNCATE":
            table = self.tables[key]
            self.db.execute(f"DROP TABLE {_qualified(*key)}")
            del self.tables[key]
            body = {k: v for k, v in table.items() if k not in ("id", "etag", "type")}
        else:
            body = {
                "tableReference": dict(zip(("projectId", "datasetId", "tableId"), key, strict=True))
            }
        body["schema"] = {"fields": fields}
        self._create_table(key[0], key[1], body)
        self.db.register("incoming", arrow)
        self.db.execute(f"INSERT INTO {_qualified(*key)} SELECT * FROM incoming")
        self.db.unregister("incoming")

    def _start_resumable(self, project: str, body: dict) -> Response:
        session = uuid.uuid4().hex
        self.sessions[session] = {"project": project, "body": body, "data": b""}
        return Response(status=200, headers={"Location": f"{self.url}/resumable/{session}"})

    def _resumable_chunk(self, request: Request) -> Response:
        session = self.sessions[request.path.rsplit("/", 1)[1]]
        chunk = request.get_data()
        session["data"] += chunk
        self.requests.append(
            Recorded(request.method, request.path, dict(request.args), None, chunk, "resumable")
        )
        total = re.search(r"/(\d+|\*)$", request.headers.get("Content-Range", ""))
        if total and total[1] != "*" and len(session["data"]) >= int(total[1]):
            job = self._load(session["project"], session["body"], session["data"])
            return self._json(200, job)
        return Response(status=308, headers={"Range": f"bytes=0-{len(session['data']) - 1}"})

    def _query(self, project: str, body: dict) -> dict:
        resource = self._new_job(project, body)
        config = body["configuration"]["query"]
        sql = config["query"]
        failure = self._injected("query", sql)
        if failure and not failure.midway:
            error = {"reason": failure.reason, "message": failure.message}
            return self._finish(project, resource, _Job(resource), error)
        params = {p["name"]: _param_value(p) for p in config.get("queryParameters", [])}
        job = _Job(resource)
        error = None
        default = config.get("defaultDataset")
        try:
            self._run_sql(sql, params, default, job, failure)
        except _HttpError as exc:
            error = {"reason": exc.reason, "message": exc.message}
        except (duckdb.Error, sqlglot.errors.SqlglotError) as exc:
            reason = "notFound" if "does not exist" in str(exc) else "invalidQuery"
            error = {"reason": reason, "message": str(exc).splitlines()[0]}
        return self._finish(project, resource, job, error)

    def _run_sql(
        self,
        sql: str,
        params: dict,
        default: dict | None,
        job: _Job,
        failure: _Failure | None = None,
    ) -> None:
        if default:
            self._dataset(default["projectId"], default["datasetId"])
            self.db.execute(f'USE "{default["projectId"]}"."{default["datasetId"]}"')
        in_transaction = False
        try:
            for statement in sqlglot.parse(sql, read="bigquery"):
                if statement is None:
                    continue
                text = statement.sql("duckdb")
                if failure and failure.midway and re.search(failure.midway, text):
                    raise _HttpError(400, failure.reason, failure.message)
                used = {k: v for k, v in params.items() if re.search(rf"\${k}\b", text)}
                if isinstance(statement, sqlglot.exp.Transaction):
                    in_transaction = True
                elif isinstance(statement, sqlglot.exp.Commit):
                    in_transaction = False
                if isinstance(statement, sqlglot.exp.Query):
                    self._capture(self.db.sql(text, params=used or None), job)
                else:
                    self.db.execute(text, used) if used else self.db.execute(text)
            for table in self._created_views(sql):
                self.tables.setdefault(table, {"id": ":".join(table), "type": "VIEW"})
        except BaseException:
            if in_transaction:
                with contextlib.suppress(duckdb.Error):
                    self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.execute("USE memory")

    @staticmethod
    def _created_views(sql: str) -> list[tuple[str, str, str]]:
        found = re.findall(r"CREATE OR REPLACE VIEW `([^`.]+)\.([^`.]+)\.([^`.]+)`", sql)
        return [tuple(f) for f in found]

    @staticmethod
    def _capture(result: duckdb.DuckDBPyRelation, job: _Job) -> None:
        table = result.to_arrow_table()
        columns, fields = [], []
        for name, column in zip(table.column_names, table.columns, strict=True):
            kind = _bq_type(column.type)
            if kind == "TIMESTAMP":  # formatOptions.useInt64Timestamp: microseconds
                column = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
            fields.append({"name": name, "type": kind, "mode": "NULLABLE"})
            columns.append([_cell(v) for v in column.to_pylist()])
        job.schema = fields
        job.rows = [{"f": [{"v": v} for v in row]} for row in zip(*columns, strict=True)]

    def _job(self, project: str, job_id: str) -> _Job:
        if (project, job_id) not in self.jobs:
            raise _HttpError(404, "notFound", f"Not found: Job {project}:{job_id}")
        return self.jobs[(project, job_id)]

    def _results(self, project: str, job_id: str, args: Any) -> dict:
        job = self._job(project, job_id)
        answer: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job.resource["jobReference"],
            "jobComplete": True,
        }
        if job.schema is None:
            return answer
        answer.update(schema={"fields": job.schema}, totalRows=str(len(job.rows)))
        if args.get("maxResults") != "0":
            answer["rows"] = job.rows
        return answer


class _HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _param_value(parameter: dict) -> Any:
    return _typed_value(parameter["parameterType"], parameter.get("parameterValue", {}))


def _typed_value(kind: dict, given: dict) -> Any:
    """A query parameter's value as DuckDB binds it (ARRAY: a list, STRUCT: a dict)."""
    type_ = kind["type"]
    if type_ == "ARRAY":
        return [_typed_value(kind["arrayType"], v) for v in given.get("arrayValues", [])]
    if type_ == "STRUCT":
        fields = given.get("structValues", {})
        return {f["name"]: _typed_value(f["type"], fields.get(f["name"], {}))
                for f in kind["structTypes"]}  # fmt: skip
    value = given.get("value")
    if value is None:
        return None
    if type_ == "DATE":
        return dt.date.fromisoformat(value)
    if type_ == "TIMESTAMP":
        stamp = dt.datetime.fromisoformat(value)
        return stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp
    if type_ == "INT64":
        return int(value)
    if type_ == "FLOAT64":
        return float(value)
    if type_ == "BOOL":
        return value == "true"
    return value


def _bq_type(arrow: pa.DataType) -> str:
    if pa.types.is_integer(arrow):
        return "INTEGER"
    if pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return "FLOAT"
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_date(arrow):
        return "DATE"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMP"
    return "STRING"


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
