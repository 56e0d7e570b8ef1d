"""The graph store: windows as graphs in flat, memory-mapped numpy arrays.

A store is a folder::

    <store>/metadata.json              written by the graph builder
    <store>/parts/<part_name>/          one folder per part (train, val, test__<scenario>, ...)
        part.json                       {"name", "split", "scenario", "num_graphs", "num_nodes",
                                         "num_edges", "files": [source file paths]}
        node_offsets.npy  int64 (G+1,)  graph g's nodes are rows node_offsets[g]:node_offsets[g+1] of x
        edge_offsets.npy  int64 (G+1,)  graph g's edges are columns edge_offsets[g]:edge_offsets[g+1]
        x.npy             float32 (N, F_node)
        node_y.npy        int8 (N,)
        edge_index.npy    int32 (2, E)   LOCAL node indices (0-based within each graph)
        edge_attr.npy     float32 (E, F_edge)
        y.npy             int8 (G,)      1 attack, 0 benign, -1 unknown
        attack_type.npy   int16 (G,)     code into metadata["attack_types"] (0 normal, -1 unknown)
        window_start.npy  int64 (G,)     position of the window's first frame in its source file
        file_index.npy    int32 (G,)     index into part.json "files"

Millions of tiny graphs are never turned into millions of objects (pitfall C.3): the arrays are
opened with ``np.load(mmap_mode="r")`` and :mod:`kdgat.data.batching` gathers mini-batches straight from
them. Every graph has at least one node; a graph may have no edge (a one-frame window).

:func:`write_part` is the only writer of a part (the builder calls it, one part per source file),
:func:`concat_parts` joins parts without loading them whole, :func:`open_store` reads a store.
A part folder is written to a hidden sibling folder and moved into place when complete, so a
failed write never leaves a half-written part behind; hidden folders are ignored when listing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdgat.core.atomic import staged_folder
from kdgat.core.errors import KdgatError

__all__ = [
    "PART_ARRAYS",
    "PART_JSON",
    "METADATA_JSON",
    "ArraySpec",
    "GraphPart",
    "GraphStore",
    "concat_parts",
    "open_part",
    "open_store",
    "write_part",
]

PART_JSON = "part.json"
METADATA_JSON = "metadata.json"
PARTS_DIR = "parts"


@dataclass(frozen=True)
class ArraySpec:
    """One array of a part: file ``<name>.npy`` with this dtype and number of dimensions.

    ``length`` says what its first dimension counts (for edge_index: its second):
    ``graphs+1``, ``graphs``, ``nodes`` or ``edges``.
    """

    name: str
    dtype: np.dtype
    ndim: int
    length: str

    @property
    def filename(self) -> str:
        return f"{self.name}.npy"


def _spec(name: str, dtype: Any, ndim: int, length: str) -> ArraySpec:
    return ArraySpec(name, np.dtype(dtype), ndim, length)


#: The single source of truth for the arrays of a part.
PART_ARRAYS: tuple[ArraySpec, ...] = (
    _spec("node_offsets", np.int64, 1, "graphs+1"),
    _spec("edge_offsets", np.int64, 1, "graphs+1"),
    _spec("x", np.float32, 2, "nodes"),
    _spec("node_y", np.int8, 1, "nodes"),
    _spec("edge_index", np.int32, 2, "edges"),
    _spec("edge_attr", np.float32, 2, "edges"),
    _spec("y", np.int8, 1, "graphs"),
    _spec("attack_type", np.int16, 1, "graphs"),
    _spec("window_start", np.int64, 1, "graphs"),
    _spec("file_index", np.int32, 1, "graphs"),
)
_SPECS = {s.name: s for s in PART_ARRAYS}


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------


def _coerce(where: str, name: str, value: Any) -> np.ndarray:
    """``value`` as a C-contiguous array of the spec's dtype, or a one-line KdgatError.

    Casts that lose nothing are done: numpy "safe" casts, integer to narrower integer when every
    value fits, float64 to float32 when no finite value overflows. Anything else (a float array
    for an integer field, an integer array for a feature matrix) is refused.
    """
    spec = _SPECS[name]
    arr = np.asarray(value)
    if arr.ndim != spec.ndim:
        raise KdgatError(f"{where}: {name} must be {spec.ndim}-D ({spec.dtype}), got shape {tuple(arr.shape)}")
    src, dst = arr.dtype, spec.dtype
    if src == dst:
        return np.ascontiguousarray(arr)
    if np.can_cast(src, dst, casting="safe"):
        return np.ascontiguousarray(arr.astype(dst))
    if dst.kind in "iu" and src.kind in "iub":
        if arr.size:
            info = np.iinfo(dst)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                raise KdgatError(f"{where}: {name} values [{lo}, {hi}] do not fit in {dst}")
        return np.ascontiguousarray(arr.astype(dst))
    if dst.kind == "f" and src.kind == "f":
        out = np.ascontiguousarray(arr.astype(dst))
        if out.size and np.isinf(out).any() and not np.isinf(arr).any():
            raise KdgatError(f"{where}: {name} has values too large for {dst}")
        return out
    raise KdgatError(f"{where}: {name} has dtype {src}, expected {dst}")


def _check_offsets(where: str, name: str, offsets: np.ndarray, total: int, *, strict: bool) -> None:
    if offsets.shape[0] < 1:
        raise KdgatError(f"{where}: {name} is empty (it needs num_graphs + 1 entries)")
    if offsets[0] != 0:
        raise KdgatError(f"{where}: {name} must start at 0, starts at {int(offsets[0])}")
    steps = np.diff(offsets)
    if strict and steps.size and steps.min() < 1:
        g = int(np.argmax(steps < 1))
        raise KdgatError(
            f"{where}: {name} must increase strictly (every graph has >= 1 node); graph {g} has {int(steps[g])}"
        )
    if not strict and steps.size and steps.min() < 0:
        g = int(np.argmax(steps < 0))
        raise KdgatError(f"{where}: {name} is not monotone (decreases at graph {g})")
    if offsets[-1] != total:
        raise KdgatError(f"{where}: {name} ends at {int(offsets[-1])}, but there are {total} rows")


def _check_values(
    where: str,
    name: str,
    arr: np.ndarray,
    allowed: tuple[int, ...] | None = None,
    lo: int | None = None,
    hi: int | None = None,
) -> None:
    if not arr.size:
        return
    if allowed is not None:
        bad = ~np.isin(arr, np.asarray(allowed, dtype=arr.dtype))
        if bad.any():
            raise KdgatError(f"{where}: {name} has value {int(arr[bad][0])}, allowed {list(allowed)}")
    if lo is not None and int(arr.min()) < lo:
        raise KdgatError(f"{where}: {name} has value {int(arr.min())} < {lo}")
    if hi is not None and int(arr.max()) > hi:
        raise KdgatError(f"{where}: {name} has value {int(arr.max())} > {hi}")


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _part_json(
    name: str, split: str, scenario: str, num_graphs: int, num_nodes: int, num_edges: int, files: list[str]
) -> dict[str, Any]:
    return {
        "name": str(name),
        "split": str(split),
        "scenario": str(scenario),
        "num_graphs": int(num_graphs),
        "num_nodes": int(num_nodes),
        "num_edges": int(num_edges),
        "files": [str(f) for f in files],
    }


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_part(
    part_dir: str | Path,
    *,
    name: str,
    split: str,
    scenario: str,
    files: list[str] | list[Path],
    node_offsets: Any,
    edge_offsets: Any,
    x: Any,
    node_y: Any,
    edge_index: Any,
    edge_attr: Any,
    y: Any,
    attack_type: Any,
    window_start: Any,
    file_index: Any,
    fsync: bool = True,
) -> dict[str, Any]:
    """Validate one part's arrays and write them (``.npy`` files and ``part.json``) to ``part_dir``.

    Dtypes are cast when nothing is lost (e.g. int64 ``edge_index`` whose values fit int32,
    float64 features); shapes, offsets (start at 0, node offsets strictly increasing, edge
    offsets non-decreasing, ending at the row counts), local edge indices (``0 <= i < nodes of
    the graph``), labels and file indices are checked. Any problem raises a one-line
    :class:`KdgatError` and writes nothing. An existing ``part_dir`` is replaced as a whole.
    Returns the ``part.json`` dict.
    """
    part_dir = Path(part_dir)
    where = f"part {name!r}"
    arrays = {
        "node_offsets": node_offsets,
        "edge_offsets": edge_offsets,
        "x": x,
        "node_y": node_y,
        "edge_index": edge_index,
        "edge_attr": edge_attr,
        "y": y,
        "attack_type": attack_type,
        "window_start": window_start,
        "file_index": file_index,
    }
    a = {k: _coerce(where, k, v) for k, v in arrays.items()}
    files = [str(f) for f in files]

    num_graphs = a["node_offsets"].shape[0] - 1
    num_nodes = a["x"].shape[0]
    num_edges = a["edge_attr"].shape[0]
    if num_graphs < 0:
        raise KdgatError(f"{where}: node_offsets is empty (it needs num_graphs + 1 entries)")
    if a["edge_index"].shape[0] != 2:
        raise KdgatError(f"{where}: edge_index must have shape (2, E), got {tuple(a['edge_index'].shape)}")
    expected = {"graphs+1": num_graphs + 1, "graphs": num_graphs, "nodes": num_nodes, "edges": num_edges}
    for spec in PART_ARRAYS:
        arr = a[spec.name]
        got = arr.shape[1] if spec.name == "edge_index" else arr.shape[0]
        if got != expected[spec.length]:
            raise KdgatError(
                f"{where}: {spec.name} has {got} entries, expected {expected[spec.length]} "
                f"({spec.length.replace('+1', ' + 1')}); shape {tuple(arr.shape)}"
            )

    _check_offsets(where, "node_offsets", a["node_offsets"], num_nodes, strict=True)
    _check_offsets(where, "edge_offsets", a["edge_offsets"], num_edges, strict=False)

    if num_edges:
        ei = a["edge_index"]
        per_edge_nodes = np.repeat(np.diff(a["node_offsets"]), np.diff(a["edge_offsets"]))
        bad = (ei < 0) | (ei >= per_edge_nodes)
        if bad.any():
            e = int(np.argmax(bad.any(axis=0)))
            g = int(np.searchsorted(a["edge_offsets"], e, side="right") - 1)
            raise KdgatError(
                f"{where}: edge {e} (graph {g}) has local node index {ei[:, e].tolist()} "
                f"outside 0..{int(per_edge_nodes[e]) - 1}"
            )
    _check_values(where, "y", a["y"], allowed=(-1, 0, 1))
    _check_values(where, "node_y", a["node_y"], allowed=(-1, 0, 1))
    _check_values(where, "attack_type", a["attack_type"], lo=-1)
    _check_values(where, "window_start", a["window_start"], lo=0)
    _check_values(where, "file_index", a["file_index"], lo=0, hi=len(files) - 1)

    info = _part_json(name, split, scenario, num_graphs, num_nodes, num_edges, files)
    with staged_folder(part_dir, fsync=fsync) as tmp:
        for spec in PART_ARRAYS:
            np.save(tmp / spec.filename, a[spec.name], allow_pickle=False)
        _write_json(tmp / PART_JSON, info)
    return info


def _copy_chunked(
    dst: np.ndarray,
    dst_start: int,
    src: np.ndarray,
    *,
    add: int = 0,
    mapping: np.ndarray | None = None,
    chunk: int = 1 << 20,
) -> None:
    """``dst[dst_start:dst_start+len(src)] = f(src)`` along axis 0, ``chunk`` rows at a time."""
    n = src.shape[0]
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        block = src[s:e]
        if mapping is not None:
            block = mapping[block]
        elif add:
            block = block + add
        dst[dst_start + s : dst_start + e] = block


def concat_parts(
    out_dir: str | Path,
    inputs: list[str | Path],
    *,
    name: str,
    split: str,
    scenario: str,
    fsync: bool = True,
) -> dict[str, Any]:
    """Concatenate part folders ``inputs`` (in that order) into one part at ``out_dir``.

    Nothing is loaded whole: outputs are ``np.lib.format.open_memmap`` files sized from the
    inputs' ``part.json``, filled in chunks from the memory-mapped inputs. Offsets are shifted;
    the ``files`` lists are concatenated with duplicates removed (first occurrence kept) and
    ``file_index`` renumbered accordingly. Returns the new ``part.json`` dict.
    """
    out_dir = Path(out_dir)
    if not inputs:
        raise KdgatError(f"part {name!r}: concat_parts needs at least one input part")
    parts = [open_part(p) for p in inputs]
    out_resolved = out_dir.resolve()
    for p in parts:
        if p.path.resolve() == out_resolved:
            raise KdgatError(f"part {name!r}: output folder {out_dir} is also an input")
    f_node = {p.num_node_features for p in parts}
    f_edge = {p.num_edge_features for p in parts}
    if len(f_node) > 1 or len(f_edge) > 1:
        raise KdgatError(
            f"part {name!r}: inputs differ in feature counts (node {sorted(f_node)}, edge {sorted(f_edge)})"
        )
    fn, fe = f_node.pop(), f_edge.pop()

    files: list[str] = []
    file_pos: dict[str, int] = {}
    mappings = []
    for p in parts:
        m = []
        for f in p.files:
            if f not in file_pos:
                file_pos[f] = len(files)
                files.append(f)
            m.append(file_pos[f])
        mappings.append(np.asarray(m, dtype=np.int32))

    G = sum(p.num_graphs for p in parts)
    N = sum(p.num_nodes for p in parts)
    E = sum(p.num_edges for p in parts)
    shapes = {
        "node_offsets": (G + 1,),
        "edge_offsets": (G + 1,),
        "x": (N, fn),
        "node_y": (N,),
        "edge_index": (2, E),
        "edge_attr": (E, fe),
        "y": (G,),
        "attack_type": (G,),
        "window_start": (G,),
        "file_index": (G,),
    }
    info = _part_json(name, split, scenario, G, N, E, files)
    try:
        with staged_folder(out_dir, fsync=fsync) as tmp:
            out = {
                s.name: np.lib.format.open_memmap(tmp / s.filename, mode="w+", dtype=s.dtype, shape=shapes[s.name])
                for s in PART_ARRAYS
            }
            g0 = n0 = e0 = 0
            for p, mapping in zip(parts, mappings, strict=True):
                # offsets: all but the last entry of each input, shifted; the final total comes at the end
                _copy_chunked(out["node_offsets"], g0, p.node_offsets[:-1], add=n0)
                _copy_chunked(out["edge_offsets"], g0, p.edge_offsets[:-1], add=e0)
                _copy_chunked(out["x"], n0, p.x)
                _copy_chunked(out["node_y"], n0, p.node_y)
                for r in range(2):
                    _copy_chunked(out["edge_index"][r], e0, p.edge_index[r])
                _copy_chunked(out["edge_attr"], e0, p.edge_attr)
                for k in ("y", "attack_type", "window_start"):
                    _copy_chunked(out[k], g0, getattr(p, k))
                if p.num_graphs:
                    _copy_chunked(out["file_index"], g0, p.file_index, mapping=mapping)
                g0 += p.num_graphs
                n0 += p.num_nodes
                e0 += p.num_edges
            out["node_offsets"][G] = N
            out["edge_offsets"][G] = E
            for arr in out.values():
                arr.flush()
            del out
            _write_json(tmp / PART_JSON, info)
    finally:
        for p in parts:
            p.close()
    return info


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return _read_json_bytes(path, what)[0]


def _read_json_bytes(path: Path, what: str) -> tuple[dict[str, Any], bytes]:
    """The JSON object in ``path`` and the bytes it was read from (one read: their hash is of what was parsed)."""
    if not path.is_file():
        raise KdgatError(f"{what}: missing file {path}")
    try:
        raw = path.read_bytes()
        obj = json.loads(raw.decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdgatError(f"{what}: cannot read {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise KdgatError(f"{what}: {path} does not hold a JSON object")
    return obj, raw


class GraphPart:
    """One part of a store: memory-mapped arrays (attributes named as in :data:`PART_ARRAYS`).

    ``part[i]`` / ``part.graph(i)`` builds one :class:`torch_geometric.data.Data` (for tests and
    inspection; training uses :func:`kdgat.data.batching.assemble_batch`).
    """

    node_offsets: np.ndarray
    edge_offsets: np.ndarray
    x: np.ndarray
    node_y: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    y: np.ndarray
    attack_type: np.ndarray
    window_start: np.ndarray
    file_index: np.ndarray

    def __init__(self, path: str | Path):
        self.path = Path(path)
        where = f"part {self.path}"
        if not self.path.is_dir():
            raise KdgatError(f"{where}: no such part folder")
        self.info = _read_json(self.path / PART_JSON, where)
        try:
            self.name = str(self.info["name"])
            self.split = str(self.info["split"])
            self.scenario = str(self.info["scenario"])
            self.files = [str(f) for f in self.info["files"]]
            G, N, E = (int(self.info[k]) for k in ("num_graphs", "num_nodes", "num_edges"))
        except (KeyError, TypeError, ValueError) as exc:
            raise KdgatError(f"{where}: {PART_JSON} lacks or mangles key {exc}") from None
        expected = {"graphs+1": G + 1, "graphs": G, "nodes": N, "edges": E}
        for spec in PART_ARRAYS:
            file = self.path / spec.filename
            if not file.is_file():
                raise KdgatError(f"{where}: missing file {spec.filename}")
            try:
                arr = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise KdgatError(f"{where}: cannot read {spec.filename}: {exc}") from None
            if arr.dtype != spec.dtype or arr.ndim != spec.ndim:
                raise KdgatError(
                    f"{where}: {spec.filename} is {arr.dtype} {arr.ndim}-D, expected {spec.dtype} {spec.ndim}-D"
                )
            got = arr.shape[1] if spec.name == "edge_index" else arr.shape[0]
            if got != expected[spec.length] or (spec.name == "edge_index" and arr.shape[0] != 2):
                raise KdgatError(
                    f"{where}: shape mismatch: {spec.filename} has shape {tuple(arr.shape)}, "
                    f"{PART_JSON} says {G} graphs, {N} nodes, {E} edges"
                )
            setattr(self, spec.name, arr)
        if (
            int(self.node_offsets[0]) != 0
            or int(self.node_offsets[-1]) != N
            or int(self.edge_offsets[0]) != 0
            or int(self.edge_offsets[-1]) != E
        ):
            raise KdgatError(f"{where}: shape mismatch: offsets do not span the {N} nodes / {E} edges")
        self.num_graphs = G
        self.num_nodes = N
        self.num_edges = E

    # -- sizes -----------------------------------------------------------------------------
    @property
    def num_node_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_edge_features(self) -> int:
        return int(self.edge_attr.shape[1])

    def __len__(self) -> int:
        return self.num_graphs

    def __repr__(self) -> str:
        return (
            f"GraphPart({self.name!r}, split={self.split!r}, scenario={self.scenario!r}, "
            f"graphs={self.num_graphs}, nodes={self.num_nodes}, edges={self.num_edges})"
        )

    # -- access ----------------------------------------------------------------------------
    def labels(self) -> np.ndarray:
        """Graph labels (int8 copy: 1 attack, 0 benign, -1 unknown)."""
        return np.array(self.y)

    def graph(self, i: int):
        """Graph ``i`` as a ``Data`` (x, edge_index int64, edge_attr, y long [1], node_y long,
        attack_type long [1]); tensors are copies, never views of the read-only maps."""
        import torch
        from torch_geometric.data import Data

        i = int(i)
        if not 0 <= i < self.num_graphs:
            raise IndexError(f"graph index {i} out of range for part {self.name!r} ({self.num_graphs} graphs)")
        a, b = int(self.node_offsets[i]), int(self.node_offsets[i + 1])
        c, d = int(self.edge_offsets[i]), int(self.edge_offsets[i + 1])
        return Data(
            x=torch.from_numpy(np.array(self.x[a:b])),
            edge_index=torch.from_numpy(self.edge_index[:, c:d].astype(np.int64)),
            edge_attr=torch.from_numpy(np.array(self.edge_attr[c:d])),
            y=torch.tensor([int(self.y[i])], dtype=torch.long),
            node_y=torch.from_numpy(self.node_y[a:b].astype(np.int64)),
            attack_type=torch.tensor([int(self.attack_type[i])], dtype=torch.long),
        )

    __getitem__ = graph

    def close(self) -> None:
        """Drop the memory maps (the object is unusable afterwards)."""
        for spec in PART_ARRAYS:
            if hasattr(self, spec.name):
                delattr(self, spec.name)


def open_part(path: str | Path) -> GraphPart:
    """Open one part folder (checks files, dtypes and shapes against ``part.json``)."""
    return GraphPart(path)


class GraphStore:
    """An opened store: ``metadata`` (dict from metadata.json) and ``parts`` (name -> GraphPart,
    sorted by name; the name is the part's folder name)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        where = f"graph store {self.path}"
        if not self.path.is_dir():
            raise KdgatError(f"{where}: no such folder")
        self.metadata, raw = _read_json_bytes(self.path / METADATA_JSON, where)
        # the store's identity as it was opened: a run records this, not the file's hash when it ends (a store
        # rebuilt in place meanwhile is another store, which the run never read)
        self.metadata_sha256 = hashlib.sha256(raw).hexdigest()
        parts_dir = self.path / PARTS_DIR
        if not parts_dir.is_dir():
            raise KdgatError(f"{where}: missing folder {PARTS_DIR}/")
        names = sorted(p.name for p in parts_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.parts: dict[str, GraphPart] = {}
        for n in names:
            part = GraphPart(parts_dir / n)
            if part.name != n:
                raise KdgatError(f"{where}: part folder {n!r} holds a part named {part.name!r}")
            self.parts[n] = part
        listed = self.metadata.get("parts")
        if isinstance(listed, dict):
            missing = sorted(set(listed) - set(self.parts))
            if missing:
                raise KdgatError(f"{where}: missing part folder {PARTS_DIR}/{missing[0]} (listed in {METADATA_JSON})")
        for key, attr in (("node_features", "num_node_features"), ("edge_features", "num_edge_features")):
            names_ = self.metadata.get(key)
            if names_ is None:
                continue
            for part in self.parts.values():
                if getattr(part, attr) != len(names_):
                    raise KdgatError(
                        f"{where}: shape mismatch: part {part.name!r} has {getattr(part, attr)} "
                        f"{key.replace('_', ' ')}, {METADATA_JSON} names {len(names_)}"
                    )

    @property
    def dataset(self) -> str:
        """The catalog dataset the store was built from (its folder name for stores that predate the field)."""
        return self.metadata.get("dataset") or self.path.name

    def part(self, name: str) -> GraphPart:
        try:
            return self.parts[name]
        except KeyError:
            raise KdgatError(
                f"graph store {self.path}: no part {name!r} (parts: {', '.join(self.parts) or 'none'})"
            ) from None

    def test_parts(self) -> dict[str, GraphPart]:
        """Parts whose split is ``test``, sorted by name."""
        return {n: p for n, p in self.parts.items() if p.split == "test"}

    def _feature_count(self, key: str, attr: str) -> int:
        names = self.metadata.get(key)
        if names is not None:
            return len(names)
        if self.parts:
            return getattr(next(iter(self.parts.values())), attr)
        raise KdgatError(f"graph store {self.path}: {METADATA_JSON} has no {key!r} and there are no parts")

    @property
    def num_node_features(self) -> int:
        return self._feature_count("node_features", "num_node_features")

    @property
    def num_edge_features(self) -> int:
        return self._feature_count("edge_features", "num_edge_features")

    @property
    def attack_types(self) -> list[str]:
        return list(self.metadata.get("attack_types", []))

    @property
    def vocab_size(self) -> int:
        if "vocab_size" not in self.metadata:
            raise KdgatError(f"graph store {self.path}: {METADATA_JSON} has no 'vocab_size'")
        return int(self.metadata["vocab_size"])

    def __repr__(self) -> str:
        return f"GraphStore({str(self.path)!r}, parts={list(self.parts)})"


def open_store(path: str | Path) -> GraphStore:
    """Open a store folder: reads ``metadata.json`` and memory-maps every part under ``parts/``."""
    return GraphStore(path)
