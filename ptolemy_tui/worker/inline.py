"""One container of an inline build: the sources are read once, as for a staged CAR, but no CAR is written.

What gets recorded is exactly what a blitz build records (payload CID, piece CID v1/v2, sizes, every entry's
CID) plus the CAR's plan (core.carplan), in the same transaction, so `ptolemy serve` and `ptolemy car export`
on any host that reaches the store can regenerate the CAR byte for byte. Staging space used: none.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from ptolemy_tui.core.car import CARV1_HEADER_LENGTH, SourceChanged, SourceEntry
from ptolemy_tui.core.carplan import SourceRanges, entry_ranges, record_plan
from ptolemy_tui.core.commp import CommP
from ptolemy_tui.core.packing import CONTAINER_WRAP
from ptolemy_tui.store.models import Container
from ptolemy_tui.store import transitions
from ptolemy_tui.worker import dbretry

log = logging.getLogger(__name__)

COMMP_THREADS = 2


def build(container: Container, entries: list[SourceEntry], rows: list[tuple], *, holder: transitions.Holder,
          host: str, reporter,
          profile: str, source, checks, before_read: Callable, on_progress: Callable, fail: Callable,
          started: float):
    """Record one claimed container as an inline CAR. Never raises for a per-container problem."""
    from ptolemy_tui.worker.container import Aborted, ContainerFailed, Outcome, _describe_oserror, check_size_model

    try:
        hasher = CommP(deferred_prefix=CARV1_HEADER_LENGTH, threads=COMMP_THREADS)
        try:
            with SourceRanges(source, entry_ranges(entries)) as read_at:
                result, plan = record_plan(entries, read_at, profile=profile, wrap=CONTAINER_WRAP, sink=hasher,
                                           before_read=before_read, on_progress=on_progress,
                                           after_read=checks.unchanged_while_read)
            piece = hasher.digest()
        finally:
            hasher.close()
        if piece.payload_size != result.car_size:
            raise ContainerFailed(f"internal error: CommP saw {piece.payload_size} bytes, the CAR has {result.car_size}")
        check_size_model(container, result)
        if reporter.claim_lost.is_set():
            raise Aborted()
    except Aborted:
        return Outcome("aborted", "the claim was cancelled or taken over")
    except ContainerFailed as exc:
        return fail(container, holder, str(exc))
    except SourceChanged as exc:
        return fail(container, holder, f"source changed since scan: {checks.current or exc}")
    except OSError as exc:
        message, _ = _describe_oserror(exc, "")
        return fail(container, holder, message)
    except Exception as exc:  # noqa: BLE001 - a bug must fail one container, not kill the worker mid-build
        log.exception("container %s: unexpected error", container.seq)
        return fail(container, holder, f"internal error: {exc.__class__.__name__}: {exc}")

    blob = plan.encode()
    seconds = time.monotonic() - started
    car_fields = dict(path="", payload_cid=str(result.root_cid), piece_cid=piece.piece_cid_v1,
                      piece_cid_v2=piece.piece_cid_v2, car_size=result.car_size,
                      padded_piece_size=piece.padded_piece_size, seconds=round(seconds, 3), host=host)
    cids = {path: str(cid) for path, cid in result.entry_cids}
    entry_rows = [(path, cids[path], file_id, offset, length) for path, file_id, offset, length in rows
                  if path in cids]
    recorded = dbretry.retrying(
        lambda: transitions.record_built(holder, container, car_fields, entry_rows, plan=blob), "recording the CAR")
    if not recorded:
        return Outcome("aborted", "the claim was cancelled or taken over before the CAR was recorded")
    log.info("container %s recorded inline: %s, %d bytes, plan %d bytes", container.seq, piece.piece_cid_v1,
             result.car_size, len(blob))
    return Outcome("built")
