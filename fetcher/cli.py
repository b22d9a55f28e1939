"""`fetcher`: serve, get, list, validate, compile, diff, load, backfill, stream, demo and
logs, one subcommand each."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_TARGET = "127.0.0.1:50051"
# fetcher compile's stage 5 limits: flag, what it counts, default (fetcher.compiler.Limits).
COMPILE_LIMITS = (
    ("--max-stores", "stores a join reads per request", 3),
    ("--max-lookups", "lookups per entity (join parts)", 8),
    ("--max-features", "features per vector of a join", 500),
    ("--max-tiles", "tiles a window reads per entity (window / tile)", 400),
)


def _settings(path: str | None) -> Any:
    from fetcher.config import load_settings

    return load_settings(path or os.environ.get("FETCHER_SETTINGS"))


def _cmd_serve(args: argparse.Namespace) -> int:
    from fetcher.server import run_serve

    return run_serve(args.settings or os.environ.get("FETCHER_SETTINGS"), args.workers)


def _parse_at(text: str | None) -> dt.datetime | int | None:
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _format_ms(ms: int) -> str:
    if ms == 0:
        return "-"
    # Integer timedelta arithmetic: ms / 1000 as a float can land a millisecond early.
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds")


def _context_value(text: str, kind: Any) -> Any:
    """`--context` text as a value of the request-time value's FeatureType `kind`."""
    from fetcher.types import FeatureType

    if kind is FeatureType.DOUBLE:
        return float(text)
    if kind is FeatureType.INT64:
        return int(text)
    if kind is FeatureType.BOOL:
        if text.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return text.lower() == "true"
    if kind is FeatureType.BYTES:
        return bytes.fromhex(text[2:]) if text.startswith("0x") else text.encode()
    if kind is FeatureType.STRING:
        return text
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError("expected a JSON list, like [1, 2]")
    if kind is FeatureType.DOUBLE_LIST:
        return [float(v) for v in items]
    return items


def _cmd_get(args: argparse.Namespace) -> int:
    from fetcher.client import FeatureClient
    from fetcher.codec import KeyValueError, parse_key_text
    from fetcher.types import FeatureType, KeyColumn, KeyType

    name = args.service or args.group
    kind = "service" if args.service else "group"
    with FeatureClient(args.target, timeout_s=args.timeout) as client:
        listing = client.describe(name)
        # A group and a service may share a name: take the kind the user asked for.
        entries = listing.services if args.service else listing.groups
        if not entries:
            raise SystemExit(f"--{kind} {name!r}: the server has no feature {kind} of that name")
        types = {k.name: KeyType(k.type) for k in entries[0].keys}
        keys: dict[str, int | str | bytes] = {}
        for item in args.key:
            key_name, sep, text = item.partition("=")
            if not sep:
                raise SystemExit(f"--key {item!r}: expected NAME=VALUE")
            if key_name not in types:
                known = ", ".join(types)
                raise SystemExit(f"--key {key_name!r}: {name} has keys {known}")
            try:
                keys[key_name] = parse_key_text(KeyColumn(key_name, types[key_name]), text)
            except KeyValueError as exc:
                raise SystemExit(f"--key {item!r}: {exc}") from None
        declared = {c.name: FeatureType(c.type) for c in getattr(entries[0], "context", ())}
        context: dict[str, Any] = {}
        for item in args.context:
            value_name, sep, text = item.partition("=")
            if not sep:
                raise SystemExit(f"--context {item!r}: expected NAME=VALUE")
            if value_name not in declared:
                known = ", ".join(declared) or "none"
                raise SystemExit(f"--context {value_name!r}: {name} reads request-time "
                                 f"values: {known}")
            try:
                context[value_name] = _context_value(text, declared[value_name])
            except ValueError as exc:
                raise SystemExit(f"--context {item!r}: {exc}") from None
        response = client.get_raw(
            keys=keys, service=args.service, group=args.group, at=_parse_at(args.at),
            context=context,
        )
    from fetcher.client import decode_vectors

    row = decode_vectors(response.metadata, [response.vector])[0]
    if args.json:
        out = {
            "config_version": response.metadata.config_version,
            "features": {
                n: {
                    "status": v.status.name,
                    "value": _jsonable(v.value, exact=True),
                    "type": v.type.name,
                }
                for n, v in row.items()
            },
            "event_timestamps_ms": dict(
                zip(response.metadata.groups, response.vector.event_timestamps_ms, strict=True)
            ),
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{name}  (config {response.metadata.config_version})")
    for group, ms in zip(response.metadata.groups, response.vector.event_timestamps_ms,
                         strict=True):
        print(f"  {group:<24} event time {_format_ms(ms)}")
    width = max(len(n) for n in row) if row else 10
    print(f"\n  {'feature':<{width}}  {'type':<11}  {'status':<15}  value")
    for feature_name, value in row.items():
        shown = _jsonable(value.value) if value.status.name == "PRESENT" else ""
        type_name = FeatureType(value.type).name
        print(f"  {feature_name:<{width}}  {type_name:<11}  {value.status.name:<15}  {shown}")
    return 0


def _jsonable(value: Any, *, exact: bool = False) -> Any:
    # --json output is read by programs: doubles stay exact (json writes repr, which
    # round-trips); only the table rounds them for the eye.
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, float):
        return value if exact else round(value, 6)
    if isinstance(value, list):
        return [_jsonable(v, exact=exact) for v in value]
    return value


def _cmd_list(args: argparse.Namespace) -> int:
    from fetcher.client import FeatureClient
    from fetcher.types import FeatureType, KeyType

    with FeatureClient(args.target, timeout_s=args.timeout) as client:
        listing = client.describe(args.name or "")
    print(f"config {listing.config_version}")
    for kind, entries in (("group", listing.groups), ("service", listing.services)):
        for entry in entries:
            keys = ", ".join(f"{k.name}:{KeyType(k.type).name.lower()}" for k in entry.keys)
            print(f"\n{kind} {entry.name}  keys: {keys}  ({len(entry.features)} features)")
            context = getattr(entry, "context", ())
            if context:
                print("  context: " + ", ".join(
                    f"{c.name}:{FeatureType(c.type).name.lower()}" for c in context))
            if args.name:
                for f in entry.features:
                    derived = f"  = {f.expression}" if f.expression else ""
                    print(f"  {f.name:<32} {FeatureType(f.type).name}{derived}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from fetcher.catalog import CatalogError, load_catalog

    stores = None
    if args.settings:
        stores = set(_settings(args.settings).stores)
    try:
        catalog = load_catalog(args.directory, stores)
    except CatalogError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(
        f"ok: {args.directory}: version {catalog.version}, {len(catalog.groups)} feature "
        f"groups, {len(catalog.services)} feature services"
    )
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from fetcher.compiler import Limits, run_chronon_compile, run_compile

    given = {"stores": args.max_stores, "lookups": args.max_lookups,
             "features": args.max_features, "tiles": args.max_tiles}
    limits = Limits(**{k: v for k, v in given.items() if v is not None})
    if args.from_chronon is None and args.types is None:
        return run_compile(args.repo or ".", args.out, strict=args.strict, as_json=args.json,
                           against=args.against, force=args.force, limits=limits,
                           report=args.report)
    return run_chronon_compile(args.from_chronon, args.types, args.out, repo=args.repo,
                               strict=args.strict, as_json=args.json, against=args.against,
                               force=args.force, limits=limits, report=args.report)


def _cmd_diff(args: argparse.Namespace) -> int:
    from fetcher.compiler import run_diff

    return run_diff(args.from_dir, args.to_dir, as_json=args.json)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _cmd_load(args: argparse.Namespace) -> int:
    from fetcher.load import run_load, run_load_events

    if args.events:
        return asyncio.run(run_load_events(_settings(args.settings), args))
    return asyncio.run(run_load(_settings(args.settings), args))


def _cmd_backfill(args: argparse.Namespace) -> int:
    from fetcher.batch import run_backfill

    return run_backfill(args)


def _cmd_stream(args: argparse.Namespace) -> int:
    from fetcher.stream import run_stream

    return asyncio.run(run_stream(_settings(args.settings), args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from fetcher.demo import DemoError, write_demo, write_demo_files

    settings_path = args.settings or os.environ.get("FETCHER_SETTINGS") or "config/demo.toml"
    try:
        if args.files:
            write_demo_files(args.files)
            print(f"demo files written to {args.files}")
            return 0
        counts = asyncio.run(write_demo(settings_path, force=args.force))
    except DemoError as exc:
        print(f"fetcher demo: {exc}", file=sys.stderr)
        return 1
    if not counts:
        print("demo data already present (use --force to rewrite)")
    for group, count in counts.items():
        print(f"{group}: {count} rows written")
    return 0


def _time_ms(text: str) -> int:
    """An ISO-8601 time (UTC unless it says otherwise) or epoch ms, as epoch ms."""
    try:
        at = _parse_at(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (2026-12-01T10:00:00Z) or epoch ms") from None
    if isinstance(at, int):
        return at
    assert at is not None
    return int(at.timestamp() * 1000)


def _cmd_logs_read(args: argparse.Namespace) -> int:
    from fetcher.featurelog import LogReadError, read_logs, read_topic

    out = args.out or f"{args.service}.parquet"
    topic = args.directory.startswith("kafka://")
    try:
        if topic:
            summary = read_topic(args.directory, args.service, out, since_ms=args.since,
                                 until_ms=args.until, schema_hash=args.schema,
                                 schema_topic=args.schema_topic)
        else:
            summary = read_logs(args.directory, args.service, out, since_ms=args.since,
                                until_ms=args.until, schema_hash=args.schema)
    except LogReadError as exc:
        print(f"fetcher logs read: {exc}", file=sys.stderr)
        return 1
    origin = (f"{summary.messages:,} message(s)" if topic else f"{summary.files} file(s)")
    print(f"{summary.records:,} records of {args.service} from {origin}, "
          f"schema(s) {', '.join(summary.schemas)}: {out} ({len(summary.columns)} columns)")
    if summary.malformed:
        print(f"fetcher logs read: {summary.malformed:,} record(s) left out: their vector "
              "does not match their schema", file=sys.stderr)
    return 0


def _backfill_arguments(parser: argparse.ArgumentParser) -> None:
    # fetcher.batch imports no pyspark until a backfill runs: the parser costs a server nothing.
    from fetcher.batch import add_backfill_arguments

    add_backfill_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="fetcher", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--settings", help="settings TOML (default: $FETCHER_SETTINGS)")
    serve.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="server processes sharing the port (default: server.workers; 0 = one per core)",
    )
    serve.set_defaults(func=_cmd_serve)

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default=os.environ.get("FETCHER_TARGET", DEFAULT_TARGET))
        p.add_argument("--timeout", type=float, default=5.0, help="seconds")

    get = sub.add_parser("get", help="fetch one entity's feature vector")
    which = get.add_mutually_exclusive_group(required=True)
    which.add_argument("--service", help="feature service name")
    which.add_argument("--group", help="feature group name")
    get.add_argument("--key", action="append", default=[], metavar="NAME=VALUE")
    get.add_argument("--at", help="point in time: ISO-8601 or epoch ms (default: now)")
    get.add_argument("--context", action="append", default=[], metavar="NAME=VALUE",
                     help="a request-time value of the service (lists as JSON, bytes as 0x...)")
    get.add_argument("--json", action="store_true", help="print JSON")
    client_args(get)
    get.set_defaults(func=_cmd_get)

    listing = sub.add_parser("list", help="list feature groups and services")
    listing.add_argument("name", nargs="?", help="describe one group or service")
    client_args(listing)
    listing.set_defaults(func=_cmd_list)

    validate = sub.add_parser("validate", help="check a compiled config directory")
    validate.add_argument("directory")
    validate.add_argument("--settings", help="also check store names against these settings")
    validate.set_defaults(func=_cmd_validate)

    compile_ = sub.add_parser(
        "compile", help="compile Python feature definitions into a catalog (docs/compiler.md)"
    )
    compile_.add_argument(
        "repo", nargs="?", default=None, help="folder with group_bys/ and joins/ (default: .)"
    )
    compile_.add_argument("--from-chronon", metavar="DIR",
                          help="compile Chronon's compiled configs (production/) instead of REPO")
    compile_.add_argument("--types", metavar="FILE",
                          help="column types of the Chronon tables: JSON, TOML or a folder of "
                          "<table>.parquet")
    compile_.add_argument("--out", metavar="DIR", help="write the catalog here (else check only)")
    compile_.add_argument("--strict", action="store_true", help="treat warnings as errors")
    compile_.add_argument("--json", action="store_true", help="print the report as JSON")
    compile_.add_argument("--report", metavar="FILE.html",
                          help="also write the report as an HTML page (even when it fails)")
    compile_.add_argument(
        "--against", metavar="DIR",
        help="check evolution against this compiled output (default: --out's contents)",
    )
    compile_.add_argument(
        "--force", action="store_true",
        help="accept changes of online production objects without a version bump",
    )
    # The defaults are fetcher.compiler.Limits' (not imported here: `fetcher serve` would load
    # the compiler); tests/unit/compiler/test_performance.py checks they agree.
    for flag, what, default in COMPILE_LIMITS:
        compile_.add_argument(flag, type=_positive, default=None, metavar="N",
                              help=f"warn above N {what} (default: {default})")
    compile_.set_defaults(func=_cmd_compile)

    diff = sub.add_parser(
        "diff", help="list what changed between two compiled outputs (docs/compiler.md)"
    )
    diff.add_argument("--from", dest="from_dir", required=True, metavar="A",
                      help="the earlier compiled output")
    diff.add_argument("--to", dest="to_dir", required=True, metavar="B",
                      help="the later compiled output")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(func=_cmd_diff)

    load = sub.add_parser("load", help="write rows from CSV, JSON Lines or Parquet files")
    load.add_argument("--settings", help="settings TOML (default: $FETCHER_SETTINGS)")
    load.add_argument("--group", required=True, help="feature group the rows belong to")
    load.add_argument("--batch-size", type=int, default=1000)
    load.add_argument("--event-time-column", default="event_time")
    load.add_argument("--ignore-unknown-columns", action="store_true")
    load.add_argument(
        "--events", action="store_true",
        help="the files hold raw events of an aggregation group: write each key's batch part "
        "at --batch-end and push the events from it on",
    )
    load.add_argument("--batch-end", help="with --events: epoch ms or ISO-8601 (default: now)")
    load.add_argument("--id-column", default="id",
                      help="with --events: the event id column (absent: a hash of the event)")
    load.add_argument("files", nargs="+")
    load.set_defaults(func=_cmd_load)

    backfill = sub.add_parser(
        "backfill", help="compute a group's rows or batch parts from event tables on Spark "
        "and write them (docs/batch.md; needs the spark extra)")
    _backfill_arguments(backfill)
    backfill.set_defaults(func=_cmd_backfill)

    stream = sub.add_parser(
        "stream", help="apply an aggregation group's events from Kafka (docs/streaming.md)")
    stream.add_argument("--settings", help="settings TOML (default: $FETCHER_SETTINGS)")
    stream.add_argument("--group", required=True, help="the aggregation group")
    stream.add_argument("--topic", help="topic to read (default: kafka.topic)")
    stream.add_argument("--bootstrap", help="brokers host:port,... (default: "
                        "kafka.bootstrap_servers)")
    stream.add_argument("--group-id", help="Kafka consumer group (default: kafka.group_id)")
    stream.add_argument("--dead-letter-topic", help="default: kafka.dead_letter_topic")
    stream.add_argument("--format", choices=("json", "avro"),
                        help="message values (default: kafka.value_format)")
    stream.add_argument("--batch-size", type=int, help="default: kafka.batch_size")
    stream.add_argument("--linger-ms", type=int, help="default: kafka.linger_ms")
    stream.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on it")
    stream.add_argument("--metrics-host", default="127.0.0.1")
    stream.add_argument("--print-schema", action="store_true",
                        help="print the Avro schema of the group's events and exit")
    stream.set_defaults(func=_cmd_stream)

    demo = sub.add_parser("demo", help="write the demo data set into the demo store")
    demo.add_argument("--settings", help="settings TOML (default: config/demo.toml)")
    demo.add_argument("--force", action="store_true", help="rewrite even if present")
    demo.add_argument("--files", metavar="DIR", help="write the demo rows as files instead")
    demo.set_defaults(func=_cmd_demo)

    logs = sub.add_parser("logs", help="the feature log: what services served (docs/operations.md)")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    read = logs_sub.add_parser(
        "read", help="turn a service's logged records into one Parquet file for training")
    read.add_argument("directory", metavar="SOURCE",
                      help="the feature log directory (log.features.directory), or the Kafka "
                      "sink's topic as kafka://host:port[,host:port...]/topic")
    read.add_argument("--service", required=True, help="feature service name")
    read.add_argument("--since", type=_time_ms, required=True, metavar="T",
                      help="records served at or after T: ISO-8601 (UTC unless given) or "
                      "epoch ms (0: all)")
    read.add_argument("--until", type=_time_ms, default=None, metavar="T",
                      help="records served before T (default: all)")
    read.add_argument("--schema", metavar="HASH", help="only records of this logged schema")
    read.add_argument("--schema-topic", metavar="TOPIC",
                      help="with kafka://: the schema topic (default: <topic>.schemas)")
    read.add_argument("--out", "-o", metavar="FILE.parquet",
                      help="output file (default: <service>.parquet)")
    read.set_defaults(func=_cmd_logs_read)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fetcher` command."""
    logging.basicConfig(
        level=os.environ.get("FETCHER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fetcher get ... | head`: the reader left; stop quietly as other CLI tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        from fetcher.catalog import CatalogError
        from fetcher.config import SettingsError

        if isinstance(exc, CatalogError | SettingsError):
            print(f"fetcher {args.command}: {exc}", file=sys.stderr)
            return 2
        import grpc

        if isinstance(exc, grpc.RpcError):
            print(f"fetcher {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        raise
    return code


if __name__ == "__main__":
    sys.exit(main())
