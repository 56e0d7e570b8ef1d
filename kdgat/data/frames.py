"""The canonical frame schema: one row per CAN frame, whatever the capture format.

Everything downstream of ingest reads only this schema, so a new capture format
only needs a reader that fills :class:`FrameColumns`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kdgat.data.vocab import id_keys

SCHEMA_VERSION = "1"
MAX_STANDARD_ID = 0x7FF
MAX_EXTENDED_ID = 0x1FFFFFFF
BENIGN_ATTACK_TYPE = "normal"

_DICT_STRING = pa.dictionary(pa.int32(), pa.string())

FRAME_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.float64(), nullable=True),  # seconds; null if the source has none
        pa.field("can_id", pa.uint32(), nullable=False),
        pa.field("is_extended", pa.bool_(), nullable=False),  # 29-bit identifier
        pa.field("is_remote", pa.bool_(), nullable=False),  # remote transmission request
        pa.field("dlc", pa.uint8(), nullable=False),  # payload length in bytes (0..8)
        pa.field("data", pa.binary(8), nullable=False),  # payload, zero-padded to 8 bytes
        pa.field("label", pa.uint8(), nullable=True),  # 1 attack, 0 benign, null unknown
        pa.field("attack_type", _DICT_STRING, nullable=True),  # "normal" for benign frames
        pa.field("source_file", _DICT_STRING, nullable=False),
        pa.field("position", pa.int64(), nullable=False),  # 0-based frame index in the source file
        pa.field("split", _DICT_STRING, nullable=False),  # train / test / ...
        pa.field("scenario", _DICT_STRING, nullable=False),  # test scenario (or the split name)
    ],
    metadata={"kdgat.frame_schema_version": SCHEMA_VERSION},
)


@dataclass
class FrameColumns:
    """Parsed frames of one block, before file-level columns are attached.

    ``label`` is None when the format carries no labels; ``attack_type`` (one
    string per row, or None) is the format's own attack name for label-1 rows.
    """

    timestamp: np.ndarray | None
    can_id: np.ndarray
    is_extended: np.ndarray
    is_remote: np.ndarray
    dlc: np.ndarray
    data: np.ndarray  # (n, 8) uint8
    label: np.ndarray | None = None
    attack_type: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.can_id)

    def take(self, keep: np.ndarray) -> "FrameColumns":
        """Rows where ``keep`` is True (used to drop bad rows in skip mode)."""
        return FrameColumns(
            timestamp=None if self.timestamp is None else self.timestamp[keep],
            can_id=self.can_id[keep],
            is_extended=self.is_extended[keep],
            is_remote=self.is_remote[keep],
            dlc=self.dlc[keep],
            data=self.data[keep],
            label=None if self.label is None else self.label[keep],
            attack_type=None if self.attack_type is None else self.attack_type.filter(pa.array(keep)),
        )


def _constant_dict(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def build_frame_table(
    cols: FrameColumns,
    *,
    source_file: str,
    first_position: int,
    split: str,
    scenario: str,
    attack_type_default: str,
) -> pa.Table:
    """Attach file-level columns and return a table in :data:`FRAME_SCHEMA`.

    Benign rows get attack type "normal"; attack rows keep the format's own
    attack name or, if it has none, ``attack_type_default``; unlabelled rows
    get null.
    """
    n = len(cols)
    data = np.ascontiguousarray(cols.data, dtype=np.uint8)
    data_arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), n, [None, pa.py_buffer(data)])
    if cols.label is None:
        label = pa.nulls(n, pa.uint8())
        attack = pa.nulls(n, _DICT_STRING)
    else:
        label = pa.array(cols.label, pa.uint8())
        is_attack = pa.array(cols.label == 1)
        own = cols.attack_type if cols.attack_type is not None else pa.nulls(n, pa.string())
        own = pc.coalesce(own, pa.scalar(attack_type_default))
        attack = pc.if_else(is_attack, own, pa.scalar(BENIGN_ATTACK_TYPE)).dictionary_encode()
        attack = attack.cast(_DICT_STRING)
    timestamp = pa.nulls(n, pa.float64()) if cols.timestamp is None else pa.array(cols.timestamp, pa.float64())
    arrays = [
        timestamp,
        pa.array(cols.can_id, pa.uint32()),
        pa.array(cols.is_extended, pa.bool_()),
        pa.array(cols.is_remote, pa.bool_()),
        pa.array(cols.dlc, pa.uint8()),
        data_arr,
        label,
        attack,
        _constant_dict(source_file, n),
        pa.array(np.arange(first_position, first_position + n, dtype=np.int64)),
        _constant_dict(split, n),
        _constant_dict(scenario, n),
    ]
    return pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA)


class MixedLabelsError(ValueError):
    """Some frames of a table are labelled and some are not: the capture needs ingesting again."""


def payload_bytes(column) -> np.ndarray:
    """The ``data`` column (fixed_size_binary(8)) as an ``(n, 8)`` uint8 array, without copying it."""
    data_arr = column.combine_chunks()
    n = len(data_arr)
    data = np.frombuffer(data_arr.buffers()[1], dtype=np.uint8)[data_arr.offset * 8 : (data_arr.offset + n) * 8]
    return data.reshape(n, 8)


def frame_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(ID keys, data (n, 8) uint8, labels or None, timestamps or None)`` of a table in the canonical
    schema (what the graph builders read), without copying the payload bytes.

    Labels are None when no frame has one; timestamps None when no frame has one (missing ones NaN).
    """
    n = table.num_rows
    keys = id_keys(table["can_id"].to_numpy(), table["is_extended"].to_numpy())
    data = payload_bytes(table["data"])
    label = table["label"]
    if label.null_count == n:
        labels = None
    elif label.null_count:
        raise MixedLabelsError("some frames are labelled and some are not")
    else:
        labels = label.to_numpy().astype(np.int8)
    ts = table["timestamp"]
    timestamps = None if ts.null_count == n else pc.fill_null(ts, np.nan).to_numpy().astype(np.float64)
    return keys, data, labels, timestamps
