"""Shared steps of the CRM tests (issue 14), over the real broker and database."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from contactstream.adapters import bootstrap, kafka
from contactstream.adapters.caseservice import CaseService
from contactstream.adapters.config import Settings
from contactstream.adapters.ingest import Ingestor
from contactstream.adapters.journal import IngestJournal
from contactstream.adapters.privacy import Privacy, privacy
from contactstream.streams.sla import ManualClock


async def project(settings: Settings, events: list[dict[str, Any]], now: datetime,
                  ) -> tuple[bootstrap.WorkerServices, Privacy]:
    """A worker on a clock stopped at ``now`` (its figures are as of then), the events
    published through the real ingest path and projected to the end of the log; the
    caller closes the worker."""
    await kafka.ensure_topics(settings, kafka.all_topics(settings))
    worker = await bootstrap.worker_services(settings, clock=ManualClock(now))
    kit = privacy(settings, worker.db)
    try:
        ingestor = Ingestor(settings, worker.producer, bootstrap.codec(settings, worker.db),
                            IngestJournal(worker.db), kit)
        for i in range(0, len(events), 1000):
            assert (await ingestor.publish(events[i:i + 1000])).rejected == []
        await worker.projector.run(group=False, until_end=True)
    except BaseException:
        await worker.close()
        raise
    return worker, kit


async def relay_all(worker: bootstrap.WorkerServices, cases: CaseService) -> None:
    """Publish every case event the store holds to cases.v1 (the worker's case relay),
    then let the projector read its topics to the end."""
    stop = asyncio.Event()
    relay = next(r for r in worker.relays if r.name == "cases")
    task = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(400):
            last = cases.app.recorder.max_notification_id()
            if worker.db.scalar("SELECT position FROM positions WHERE name='cases'") == last:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the case relay did not catch up")
    finally:
        stop.set()
        await task
    await worker.projector.run(group=False, until_end=True)
