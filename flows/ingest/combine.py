"""Normalise a chunk's batches together: one concatenation and one ``normalise`` per group of same-shaped batches.

Batches whose raw columns have the same names and types (``Loaded.signature``: every Parquet batch a
simulator or cloud tool writes, most CSVs of one runner version) are concatenated (Arrow tables without
copying, CSV frames column by column) and normalised once, with ``keys`` saying which batch each row
came from. ``normalise`` decides column by column, so the rows come out as they would batch by batch,
except where it decides for a whole column: those decisions are made again per batch here (probabilities
written as JSON text) or after the batches that broke them are set aside (``flows.ingest.structure``
re-normalises). When a group cannot be converted or normalised as a whole (a time that is not ISO 8601
in one batch, say), its batches are done one by one, exactly as before bulk ingest, so a bad batch gets
its own reason and its neighbours are unaffected. Leaves out: validating (``flows.ingest.structure``,
the GX suites) and deciding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edge.contracts.record import PROBABILITIES
from edge.contracts.schema import DataSchema
from flows.ingest.loader import Loaded, concat_tables
from flows.ingest.normalise import normalise, number_list
from flows.ingest.reader import Unreadable, parquet_frame

log = logging.getLogger(__name__)

Normaliser = Callable[[pd.DataFrame, DataSchema], pd.DataFrame]


@dataclass
class Piece:
    """Batches normalised together: ``frame`` row ``i`` belongs to batch ``keys[i]`` (a chunk position)."""

    members: list[int]  # batch keys, in chunk order
    frame: pd.DataFrame
    keys: np.ndarray


@dataclass
class Combined:
    pieces: list[Piece] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)  # batch key -> one-line reason


def row_keys(members: list[int], rows: list[int]) -> np.ndarray:
    return np.repeat(np.asarray(members, dtype=np.int64), np.asarray(rows, dtype=np.int64))


def could_not_process(exc: BaseException) -> str:
    return f"could not be processed ({type(exc).__name__}: {str(exc).strip()[:200]})"


def _concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Same-column, same-dtype frames stacked column by column (much cheaper than pd.concat for many)."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    first = frames[0]
    if all(isinstance(dtype, np.dtype) for dtype in first.dtypes):
        columns = {name: np.concatenate([f[name].to_numpy() for f in frames]) for name in first.columns}
        return pd.DataFrame(columns, columns=first.columns)
    return pd.concat(frames, ignore_index=True)


def _group_frame(batches: list[Loaded]) -> pd.DataFrame:
    tables = [b.table for b in batches if b.table is not None]
    if len(tables) == len(batches):
        return parquet_frame(concat_tables(tables))
    frames = [b.frame for b in batches if b.frame is not None]
    return _concat_frames(frames)


def probabilities_per_batch(frame: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """Probabilities written as JSON text become lists in each batch where every value parses (as
    ``normalise`` decides for one batch), even when another batch of the group holds text that does not."""
    column = frame.get(PROBABILITIES)
    if column is None or not pd.api.types.is_object_dtype(column.dtype):
        return frame
    is_text = column.map(type).eq(str).to_numpy()
    if not is_text.any():
        return frame
    lists = column.map(number_list)
    parsed = (is_text & lists.notna().to_numpy())
    batch_ok = pd.Series(parsed).groupby(keys).transform("all").to_numpy()
    if not batch_ok.any():
        return frame
    out = frame.copy()
    out[PROBABILITIES] = column.where(~batch_ok, lists)
    return out


def _normalise_group(batches: list[Loaded], members: list[int], schema: DataSchema,
                     normaliser: Normaliser) -> Piece:
    keys = row_keys(members, [b.rows for b in batches])
    frame = normaliser(_group_frame(batches), schema)
    return Piece(members, probabilities_per_batch(frame, keys), keys)


def _one_by_one(batches: list[Loaded], members: list[int], schema: DataSchema, normaliser: Normaliser,
                out: Combined) -> None:
    for batch, key in zip(batches, members, strict=True):
        try:
            frame = normaliser(batch.raw_frame(), schema)
        except Unreadable as exc:
            out.rejected[key] = str(exc)
            continue
        except Exception as exc:  # one poisonous file must not block every run; traceback goes to the log
            log.exception("unexpected error while normalising %s", batch.item.path)
            out.rejected[key] = could_not_process(exc)
            continue
        out.pieces.append(Piece([key], frame, row_keys([key], [len(frame)])))


def combine(batches: list[Loaded], schema: DataSchema, normaliser: Normaliser = normalise) -> Combined:
    """Group the chunk's batches by signature, normalise each group once (one by one when that fails).

    A batch's key is its position in ``batches``.
    """
    groups: dict[str, list[int]] = {}
    for key, batch in enumerate(batches):
        groups.setdefault(batch.signature, []).append(key)
    out = Combined()
    for members in groups.values():
        group = [batches[k] for k in members]
        if len(group) > 1:
            try:
                out.pieces.append(_normalise_group(group, members, schema, normaliser))
                continue
            except Exception:  # noqa: BLE001 - the batches are retried one by one, which names the bad one
                log.info("group of %d batches not normalised together; doing them one by one", len(group))
        _one_by_one(group, members, schema, normaliser, out)
    return out
