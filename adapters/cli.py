"""The ``contactstream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from . import config, datadir
from .logging import configure
from .startup import explain


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contactstream",
                                description="Omnichannel contact-centre backend on Kafka")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="broker, workers and HTTP API in one command")
    up.add_argument("--data-dir")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--demo", action="store_true", help="also publish a synthetic stream")
    up.add_argument("--workers", type=int, default=1,
                    help="worker processes sharing the partitions (default 1)")
    pub = sub.add_parser("publish", help="bulk-publish JSONL or CSV ('-' for stdin)")
    pub.add_argument("file")
    pub.add_argument("--url")
    pub.add_argument("--token")
    pub.add_argument("--format", choices=["jsonl", "csv"])
    pub.add_argument("--data-dir")
    rp = sub.add_parser("replay", help="rebuild every projection from the log")
    rp.add_argument("--data-dir")
    bench = sub.add_parser("bench", help="pipeline vs raw aiokafka baseline, one run")
    bench.add_argument("--events", type=int, default=100_000)
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--runs", type=int, default=1,
                       help="pipeline parts to run, each on fresh data; medians reported")
    # 1,000: the p99 is then the tenth-largest sample, not the second (with 200 it moved
    # 48-100 ms from run to run under load)
    bench.add_argument("--samples", type=int, default=1000,
                       help="events timed one by one for freshness, at a trickle and under load")
    bench.add_argument("--alerts", type=int, metavar="CASES",
                       help="instead: alert latency after the deadline over CASES cases")
    bench.add_argument("--views", type=int, metavar="EVENTS",
                       help="also: customer view, timeline and report latency over HTTP"
                            " after EVENTS events, and the view under ingest")
    bench.add_argument("--workers", metavar="N,N,...",
                       help="instead: N worker processes each (e.g. 1,2,4): throughput,"
                            " events per CPU-second, failover after kill -9")
    bench.add_argument("--kills", type=int, default=5,
                       help="kill -9s per worker count above 1 for --workers")
    bench.add_argument("--customers", type=int, default=None,
                       help="customers for --views (default EVENTS/10)")
    bench.add_argument("--requests", type=int, default=1000,
                       help="requests per measured endpoint for --views")
    wk = sub.add_parser("worker", help="run a stream worker (any number share the work)")
    wk.add_argument("--data-dir")
    api = sub.add_parser("api", help="run the HTTP API alone (any number of replicas)")
    api.add_argument("--data-dir")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    imp = sub.add_parser("import-sqlite",
                         help="bring a data dir of the SQLite release into PostgreSQL")
    imp.add_argument("dir", help="the old data dir (readstore.sqlite, cases.sqlite, ...)")
    bk = sub.add_parser("backup", help="the database (pg_dump) and the key store, into OUT")
    bk.add_argument("out")
    bk.add_argument("--data-dir")
    rs = sub.add_parser("restore", help="a backup into an empty database and data dir")
    rs.add_argument("src")
    rs.add_argument("--data-dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # every file and folder contactstream (and its children: broker, database) creates is
    # its owner's alone: the data dir holds keys, tokens and personal data
    os.umask(0o077)
    try:
        return _run(args)
    except Exception as exc:  # noqa: BLE001 - the process edge: a startup error is one line
        message = explain(exc)
        if message is None:
            raise
        print(f"contactstream {args.command}: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = config.from_env(
        data_dir=getattr(args, "data_dir", None), host=getattr(args, "host", None),
        port=getattr(args, "port", None))
    configure(settings.log_format, settings.log_level)
    if args.command in ("worker", "api"):
        settings = _beside_up(settings)
    if args.command == "up":
        from .runner import up
        with datadir.exclusive(settings.data_dir, "up"):
            return asyncio.run(up(settings, demo=args.demo, workers=args.workers))
    if args.command == "worker":
        from .worker import run_worker
        # never locked out: any number share the partitions and the singletons by leases
        # in the database, and fencing keeps a worker that lost one from writing for it
        return asyncio.run(run_worker(settings))
    if args.command == "api":
        from .runner import serve_api
        return asyncio.run(serve_api(settings))
    if args.command == "publish":
        from .publish import PublishError, publish_file
        url, token = _publish_target(args, settings)
        try:
            return publish_file(args.file, url, token, fmt=args.format)
        except PublishError as exc:  # one line, no traceback
            print(f"contactstream publish: {exc}", file=sys.stderr)
            return 2
    if args.command == "replay":
        from .replay import replay
        with datadir.exclusive(settings.data_dir, "replay"):
            return asyncio.run(replay(settings))
    if args.command == "import-sqlite":
        from .import_sqlite import run_import
        if not Path(args.dir).is_dir():
            return run_import(Path(args.dir), settings)  # it says what is wrong
        with datadir.exclusive(Path(args.dir), "import-sqlite"):
            return run_import(Path(args.dir), settings)
    if args.command in ("backup", "restore"):
        from . import backup
        # the embedded database is started from the data dir: only while nothing else runs
        # there; an external one is dumped online
        guard = (datadir.exclusive(settings.data_dir, args.command)
                 if not settings.database_url else nullcontext())
        with guard:
            if args.command == "backup":
                return backup.backup(settings, Path(args.out))
            return backup.restore(settings, Path(args.src))
    if args.command == "bench":
        views = None if not args.views else {
            "events": args.views, "customers": args.customers or max(1, args.views // 10),
            "requests": args.requests}
        if args.workers:
            from .bench_workers import run_worker_bench
            counts = [int(n) for n in args.workers.split(",") if n.strip()]
            return asyncio.run(run_worker_bench(settings, counts, args.events,
                                                kills=max(0, args.kills), as_json=args.json))
        if args.alerts:
            from .bench_alerts import run_alert_bench
            return asyncio.run(run_alert_bench(settings, cases=args.alerts, as_json=args.json))
        from .bench import run_bench
        return asyncio.run(run_bench(settings, events=args.events, as_json=args.json,
                                     views=views, runs=max(1, args.runs),
                                     samples=max(1, args.samples)))
    return 2


def _beside_up(settings: config.Settings) -> config.Settings:
    """A worker or an API replica with no broker or database configured joins the `up`
    running in its data dir (the broker and database it recorded there)."""
    from .publish import instance
    found = instance(settings.data_dir)
    if not settings.bootstrap_servers and found.get("kafka"):
        settings = settings.with_(bootstrap_servers=found["kafka"], embedded_broker=True)
    if not settings.database_url and found.get("database"):
        settings = settings.with_(database_url=found["database"])
    return settings


def _publish_target(args: argparse.Namespace,
                    settings: config.Settings) -> tuple[str, str | None]:
    """Where to publish and with which token: the flags, then the instance of the data dir
    given (its URL and publisher token), then the environment, then the defaults."""
    from .publish import instance_url
    instance = instance_url(settings.data_dir)
    url = (args.url or (args.data_dir and instance) or os.environ.get("CONTACTSTREAM_URL")
           or instance or f"http://{settings.host}:{settings.port}")
    token = args.token or os.environ.get("CONTACTSTREAM_TOKEN")
    if token is None and settings.tokens_file.exists():
        import json
        try:
            token = json.loads(settings.tokens_file.read_text())["publisher"]
        except (OSError, ValueError, KeyError, TypeError):
            token = None  # the server's 401 says what to do
    return url, token


if __name__ == "__main__":
    sys.exit(main())
