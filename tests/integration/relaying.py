"""Case events to cases.v1 and back into the read model, in a test without a whole worker."""

from __future__ import annotations

import asyncio

from contactstream.adapters import bootstrap
from contactstream.adapters.caseservice import CaseService


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
