"""``contactstream replay``: rebuild every projection from the log."""

from __future__ import annotations

import asyncio
import sys

from tqdm import tqdm

from . import bootstrap
from .config import Settings
from .logging import get_logger
from .ownership import replay_lease

log = get_logger(__name__)


async def replay(settings: Settings) -> int:
    """The caller holds the data dir (adapters/datadir.py): no `up` runs there."""
    settings, pg = await asyncio.to_thread(bootstrap.prepare_database, settings)
    try:
        return await _replay(settings)
    finally:
        if pg is not None:
            pg.stop()


async def _replay(settings: Settings) -> int:
    # the global lease: refused while any worker holds partitions, and none takes one
    # while it is held (adapters/ownership.py)
    lease = await asyncio.to_thread(replay_lease, settings.database_url)
    try:
        return await _replay_held(settings)
    finally:
        await asyncio.to_thread(lease.stop)


async def _replay_held(settings: Settings) -> int:
    settings, broker = await bootstrap.prepare_broker(settings, window=False)  # from offset 0
    bootstrap.tune_gc()  # as the worker's process has it
    services = await bootstrap.worker_services(settings)
    try:
        services.writer.reset_projections()
        services.projector.dead_letter = False
        if services.projector.identity is not None:  # the merge history is kept as it is
            services.projector.identity.record = False
        with tqdm(unit="rec", file=sys.stderr, disable=None) as bar:
            def show(progress: object) -> None:
                bar.n = progress.records  # type: ignore[attr-defined]
                bar.refresh()
            progress = await services.projector.run(group=False, until_end=True, on_batch=show)
        print(f"replayed {progress.records} records: {progress.events} events, "
              f"{progress.dead_letters} dead letters")
        log.info("replay.done", records=progress.records, events=progress.events)
    finally:
        await services.close()
        if broker:
            broker.stop()
    return 0
