"""Synthetic CAN traffic written in the can-train-and-test layout.

Why: the real datasets are large, licensed separately and downloaded by the user, yet the demo and the
tests must exercise exactly the code path the real data takes (same folders, same file names, same CSV
bytes). This module fabricates a small, deterministic stand-in: two simulated vehicles whose ECUs send
periodic 11-bit CAN IDs (jitter, rolling counters, checksums, slowly varying signals), with attacks
injected in bursts and labelled per frame.

Everything is vectorised with numpy (loops run over CAN IDs, attack bursts and digit positions, never
over frames), and every random draw comes from ``np.random.default_rng`` seeded by ``(seed, ...)``, so an
identical seed gives byte-identical files.

Layout written under ``out`` (folder = split, file stem = attack kind, ``-N`` = capture number)::

    train_01_attack_free/attack-free-{1,2}.csv
    train_02_with_attacks/{dos,fuzzing,spoofing,replay}-1.csv
    test_01_known_vehicle_known_attack/{dos,fuzzing,spoofing,replay}-2.csv
    test_02_unknown_vehicle_known_attack/{dos,fuzzing,spoofing,replay}-3.csv      (second vehicle)
    test_03_known_vehicle_unknown_attack/{suppress,masquerade}-4.csv
    test_04_unknown_vehicle_unknown_attack/{suppress,masquerade}-5.csv            (second vehicle)
    synth.json                                                                    (marker + summary)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.manifest import MANIFEST_NAME

__all__ = [
    "ATTACK_KINDS",
    "LAYOUT",
    "MARKER",
    "SIZES",
    "START_TIMESTAMP",
    "TRAIN_KINDS",
    "SynthFile",
    "SynthSummary",
    "write_captures",
    "check_target",
    "check_parameters",
    "is_synthetic",
]

#: Start of every capture, as in the real can-train-and-test files (2023-01-01T00:00:00Z).
START_TIMESTAMP = 1672531200
#: Per-file duration in seconds for each ``size``; small keeps the whole dataset under ~150k frames.
SIZES: dict[str, float] = {"small": 10.0, "medium": 60.0, "large": 600.0}
#: Marker file that identifies a directory as ours (and so safe to replace).
MARKER = "synth.json"
GENERATOR = "kdgat.synth"  # the marker value (not a module path): folders made by older versions stay ours
FORMAT_VERSION = 1

#: (split folder, attack kind, capture number, vehicle) for every file, in writing order.
LAYOUT: tuple[tuple[str, str, int, str], ...] = (
    ("train_01_attack_free", "attack-free", 1, "A"),
    ("train_01_attack_free", "attack-free", 2, "A"),
    *(("train_02_with_attacks", k, 1, "A") for k in ("dos", "fuzzing", "spoofing", "replay")),
    *(("test_01_known_vehicle_known_attack", k, 2, "A") for k in ("dos", "fuzzing", "spoofing", "replay")),
    *(("test_02_unknown_vehicle_known_attack", k, 3, "B") for k in ("dos", "fuzzing", "spoofing", "replay")),
    *(("test_03_known_vehicle_unknown_attack", k, 4, "A") for k in ("suppress", "masquerade")),
    *(("test_04_unknown_vehicle_unknown_attack", k, 5, "B") for k in ("suppress", "masquerade")),
)
ATTACK_KINDS = ("attack-free", "dos", "fuzzing", "spoofing", "replay", "suppress", "masquerade")
#: Kinds seen in the training folders; suppress and masquerade are the "unknown attack" kinds.
TRAIN_KINDS = ("attack-free", "dos", "fuzzing", "spoofing", "replay")
_KIND_CODE = {k: i for i, k in enumerate(ATTACK_KINDS)}
_VEHICLE_INDEX = {"A": 0, "B": 1}

_US = 1_000_000
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_HEADER = b"timestamp,arbitration_id,data_field,attack\r\n"
_MIN_DURATION = 1.0
# an hour per file (about 100 MB of CSV each, 2 GB in all): 1e7 s filled memory for minutes before failing
_MAX_DURATION = 3600.0


# --------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class SynthFile:
    """One written capture; ``intervals`` are the attack bursts as absolute [start, end) timestamps."""

    path: str
    split: str
    attack: str
    capture: int
    vehicle: str
    rows: int
    attack_rows: int
    target_id: str | None = None
    intervals: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_captures` wrote; also stored in ``synth.json`` so a later run knows it may replace it."""

    seed: int
    size: str
    duration_s: float
    files: tuple[SynthFile, ...]
    vehicle_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    start_timestamp: int = START_TIMESTAMP

    @property
    def total_rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def total_attack_rows(self) -> int:
        return sum(f.attack_rows for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists, not tuples); :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["vehicle_ids"] = {k: list(v) for k, v in self.vehicle_ids.items()}
        d["files"] = [{**f, "intervals": [list(iv) for iv in f["intervals"]]} for f in d["files"]]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SynthSummary:
        files = tuple(
            SynthFile(**{**f, "intervals": tuple(tuple(iv) for iv in f.get("intervals", ()))}) for f in d["files"]
        )
        return cls(
            seed=int(d["seed"]),
            size=str(d["size"]),
            duration_s=float(d["duration_s"]),
            files=files,
            vehicle_ids={k: tuple(v) for k, v in d.get("vehicle_ids", {}).items()},
            start_timestamp=int(d.get("start_timestamp", START_TIMESTAMP)),
        )


# --------------------------------------------------------------------------------------------- vehicle

# Signal encodings: name -> (bytes, scale, offset, encoding, per-frame noise sd in physical units).
# "u" clips to the unsigned range, "s" is two's complement, "wrap" rolls over (odometer-like).
_SIGNALS: dict[str, tuple[int, float, float, str, float]] = {
    "speed": (2, 100.0, 0.0, "u", 0.0),
    "wheel_fl": (2, 100.0, 0.0, "u", 0.3),
    "wheel_fr": (2, 100.0, 0.0, "u", 0.3),
    "wheel_rl": (2, 100.0, 0.0, "u", 0.3),
    "wheel_rr": (2, 100.0, 0.0, "u", 0.3),
    "rpm": (2, 4.0, 0.0, "u", 12.0),
    "gear": (1, 1.0, 0.0, "u", 0.0),
    "throttle": (1, 2.5, 0.0, "u", 0.4),
    "brake": (1, 1.0, 0.0, "u", 0.0),
    "coolant": (1, 1.0, 40.0, "u", 0.0),
    "steer": (2, 10.0, 0.0, "s", 0.2),
    "yaw": (2, 100.0, 0.0, "s", 0.05),
    "accel": (1, 20.0, 128.0, "u", 0.05),
    "fuel": (1, 2.5, 0.0, "u", 0.0),
    "voltage": (1, 10.0, 0.0, "u", 0.05),
    "odometer": (2, 10.0, 0.0, "wrap", 0.0),
}
_POOL = (
    "wheel_rl",
    "wheel_rr",
    "throttle",
    "coolant",
    "steer",
    "yaw",
    "accel",
    "fuel",
    "voltage",
    "odometer",
    "brake",
    "rpm",
    "speed",
    "gear",
)
# Signals a role ID always carries first (the spoofing/masquerade targets of the HCRL/ROAD style attacks).
_ROLE_SIGNALS = {
    "speed": ("speed", "wheel_fl", "wheel_fr"),
    "rpm": ("rpm", "throttle", "coolant"),
    "gear": ("gear", "brake"),
}
# Physical range an attacker forges for a target signal.
_FORGED = {"rpm": (6000.0, 8000.0), "speed": (140.0, 250.0), "gear": (0.0, 6.0)}

# Per-vehicle period mix (seconds -> number of IDs); ~670-690 frames/s each, plus event-driven IDs.
_PERIOD_MIX = (
    {0.010: 3, 0.020: 4, 0.050: 5, 0.100: 6, 0.500: 4, 1.000: 4},
    {0.010: 2, 0.020: 6, 0.050: 6, 0.100: 5, 0.200: 2, 0.500: 2, 1.000: 3},
)
_N_EVENT_IDS = 2
_DLCS = np.array([2, 3, 4, 5, 6, 7, 8])
_DLC_P = np.array([0.06, 0.04, 0.08, 0.10, 0.08, 0.08, 0.56])


@dataclass(frozen=True)
class _Field:
    kind: str  # "const" | "signal" | "noise" | "counter" | "checksum"
    byte: int
    width: int = 1
    signal: str = ""
    value: int = 0


@dataclass(frozen=True)
class _IdSpec:
    can_id: int
    period: float  # seconds; 0 means event-driven (Poisson, ``rate`` per second)
    rate: float
    dlc: int
    fields: tuple[_Field, ...]


@dataclass(frozen=True)
class _Vehicle:
    name: str
    checksum: str  # "sum" | "xor"
    ids: tuple[_IdSpec, ...]
    roles: dict[str, int]  # role -> index into ids

    def spec(self, role: str) -> _IdSpec:
        return self.ids[self.roles[role]]

    def fast(self) -> list[int]:
        """Indices of IDs sent every <= 20 ms: targets whose absence or duplication shows within a window."""
        return [i for i, s in enumerate(self.ids) if 0 < s.period <= 0.020]


def _layout(rng: np.random.Generator, dlc: int, role: str) -> tuple[_Field, ...]:
    """Byte layout of one ID: signals/constants/noise, then a counter nibble and a checksum byte if DLC >= 4."""
    fields: list[_Field] = []
    body = dlc
    if dlc >= 4:
        body = dlc - 2
        fields.append(_Field("const", dlc - 2, value=int(rng.integers(0, 16)) << 4))  # flag nibble
        fields.append(_Field("counter", dlc - 2))
        fields.append(_Field("checksum", dlc - 1))
    pos = 0
    for name in _ROLE_SIGNALS.get(role, ()):
        w = _SIGNALS[name][0]
        if pos + w <= body:
            fields.append(_Field("signal", pos, w, name))
            pos += w
    while pos < body:
        r = rng.random()
        if r < 0.55:
            names = [s for s in _POOL if _SIGNALS[s][0] <= body - pos]
            name = names[int(rng.integers(len(names)))]
            w = _SIGNALS[name][0]
            fields.append(_Field("signal", pos, w, name))
            pos += w
        else:
            fields.append(_Field("const" if r < 0.9 else "noise", pos, 1, value=int(rng.integers(0, 256))))
            pos += 1
    return tuple(fields)


def _vehicle(seed: int, index: int, other: _Vehicle | None = None) -> _Vehicle:
    """A simulated vehicle derived from ``seed``; the second one reuses only ~25 % of the first one's IDs."""
    rng = np.random.default_rng([seed, 7919, index])
    mix = _PERIOD_MIX[index]
    periods = np.array([p for p, n in sorted(mix.items()) for _ in range(n)], dtype=np.float64)
    n_periodic = periods.size
    n = n_periodic + _N_EVENT_IDS
    space = np.arange(0x040, 0x7F0)
    if other is None:
        ids = rng.choice(space, size=n, replace=False)
    else:
        theirs = np.array([s.can_id for s in other.ids])
        n_shared = int(round(0.25 * n))
        shared = rng.choice(theirs, size=n_shared, replace=False)
        fresh = rng.choice(np.setdiff1d(space, theirs), size=n - n_shared, replace=False)
        ids = np.concatenate([shared, fresh])
    ids = np.sort(ids)
    # Lower IDs win arbitration, so real buses give them the fast periods; shuffle locally for variety.
    # Event-driven IDs sit among the slow ones (placeholder period 0.3 s only for this ordering).
    order_periods = np.concatenate([periods, np.full(_N_EVENT_IDS, 0.3)])
    rank = np.argsort(order_periods, kind="stable")
    perm = rank[np.argsort(np.arange(n) + rng.normal(0.0, 2.0, n), kind="stable")]
    is_event = perm >= n_periodic
    fast = [i for i in range(n) if not is_event[i] and order_periods[perm[i]] <= 0.020]
    role_idx = rng.choice(fast, size=3, replace=False)
    roles = {"speed": int(role_idx[0]), "rpm": int(role_idx[1]), "gear": int(role_idx[2])}
    role_of = {v: k for k, v in roles.items()}
    specs = []
    for i in range(n):
        role = role_of.get(i, "")
        dlc = 8 if role else int(rng.choice(_DLCS, p=_DLC_P))
        period = 0.0 if is_event[i] else float(order_periods[perm[i]])
        rate = float(rng.uniform(0.5, 3.0)) if is_event[i] else 0.0
        specs.append(_IdSpec(int(ids[i]), period, rate, dlc, _layout(rng, dlc, role)))
    return _Vehicle("AB"[index], "sum" if index == 0 else "xor", tuple(specs), roles)


# --------------------------------------------------------------------------------------------- signals

_DT = 0.01


def _drive(rng: np.random.Generator, duration: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Physical signals on a 10 ms grid: sinusoids plus a smoothed random walk, with gear/rpm derived."""
    t = np.arange(0.0, duration + 1.0, _DT)
    n = t.size
    two_pi = 2 * np.pi
    walk = np.cumsum(rng.normal(0.0, 0.05, n))
    walk = np.convolve(walk, np.ones(50) / 50, mode="same")
    slow = rng.uniform(5, 40) * np.sin(two_pi * t / rng.uniform(30, 120) + rng.uniform(0, two_pi))
    fast = rng.uniform(1, 8) * np.sin(two_pi * t / rng.uniform(5, 15) + rng.uniform(0, two_pi))
    speed = rng.uniform(10, 70) + slow + fast + walk
    speed = np.clip(speed, 0.0, 200.0)
    accel = np.gradient(speed, _DT) / 3.6
    gear = np.digitize(speed, [1.0, 15.0, 30.0, 50.0, 70.0, 95.0]).astype(np.float64)
    ratio = np.array([0.0, 110.0, 65.0, 45.0, 35.0, 28.0, 23.0])
    idle = 750.0 + 20.0 * np.sin(two_pi * t / 3.0)
    rpm = np.where(gear == 0, idle, 800.0 + speed * ratio[gear.astype(np.int64)])
    steer = rng.uniform(5, 90) * np.sin(two_pi * t / rng.uniform(4, 20) + rng.uniform(0, two_pi)) + 3.0 * np.sin(
        two_pi * t / 1.7
    )
    ambient = rng.uniform(-5, 30)
    warm = rng.uniform(0, 1200)
    sig = {
        "speed": speed,
        "wheel_fl": speed,
        "wheel_fr": speed,
        "wheel_rl": speed,
        "wheel_rr": speed,
        "rpm": np.clip(rpm, 600.0, 7000.0),
        "gear": gear,
        "throttle": np.clip(8.0 + 0.3 * speed + 30.0 * accel, 0.0, 100.0),
        "brake": (accel < -0.8).astype(np.float64),
        "coolant": 90.0 - (90.0 - ambient) * np.exp(-(t + warm) / 240.0),
        "steer": steer,
        "yaw": steer * speed / 900.0,
        "accel": accel,
        "fuel": np.clip(rng.uniform(20, 95) - 0.002 * t, 0.0, 100.0),
        "voltage": 13.9 + 0.2 * np.sin(two_pi * t / 7.0),
        "odometer": rng.uniform(0, 6000) + np.cumsum(speed) * _DT / 3600.0,
    }
    return t, sig


def _encode(name: str, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Physical values -> big-endian bytes (n, width) of the signal's raw encoding."""
    width, scale, offset, enc, noise = _SIGNALS[name]
    v = values * scale + offset
    if noise:
        v = v + rng.normal(0.0, noise * scale, v.shape)
    raw = np.rint(v).astype(np.int64)
    top = (1 << (8 * width)) - 1
    raw = np.clip(raw, 0, top) if enc == "u" else raw & top
    shifts = np.arange(width - 1, -1, -1) * 8
    return ((raw[:, None] >> shifts) & 0xFF).astype(np.uint8)


def _payload(
    spec: _IdSpec,
    t: np.ndarray,
    counter: np.ndarray,
    grid: np.ndarray,
    sig: Mapping[str, np.ndarray],
    checksum: str,
    rng: np.random.Generator,
    override: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Payload bytes (n, 8) for frames of one ID at times ``t`` (unused bytes beyond the DLC stay 0).

    ``override`` replaces signals by a forged constant (spoofing/masquerade); counter and checksum stay
    well formed, as a capable attacker would make them.
    """
    n = t.size
    out = np.zeros((n, 8), dtype=np.uint8)
    for f in spec.fields:
        if f.kind == "const":
            out[:, f.byte] = f.value
        elif f.kind == "noise":
            out[:, f.byte] = rng.integers(0, 256, n, dtype=np.uint8)
        elif f.kind == "signal":
            if override is not None and f.signal in override:
                values = np.full(n, override[f.signal])
            else:
                values = np.interp(t, grid, sig[f.signal])
            out[:, f.byte : f.byte + f.width] = _encode(f.signal, values, rng)
    for f in spec.fields:
        if f.kind == "counter":
            out[:, f.byte] = (out[:, f.byte] & 0xF0) | (counter & 0x0F).astype(np.uint8)
    for f in spec.fields:
        if f.kind == "checksum":
            others = np.delete(out[:, : spec.dlc], f.byte, axis=1)
            if checksum == "xor":
                out[:, f.byte] = np.bitwise_xor.reduce(others, axis=1) if others.shape[1] else 0
            else:
                out[:, f.byte] = (others.sum(axis=1, dtype=np.int64) & 0xFF).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------- capture


@dataclass
class _Frames:
    t_us: np.ndarray  # int64, microseconds since the capture start
    can_id: np.ndarray  # int64
    dlc: np.ndarray  # int64
    data: np.ndarray  # uint8 (n, 8)
    label: np.ndarray  # uint8

    @staticmethod
    def cat(parts: list[_Frames]) -> _Frames:
        keys = ("t_us", "can_id", "dlc", "data", "label")
        return _Frames(*(np.concatenate([getattr(p, k) for p in parts]) for k in keys))

    def take(self, idx: np.ndarray) -> _Frames:
        return _Frames(self.t_us[idx], self.can_id[idx], self.dlc[idx], self.data[idx], self.label[idx])


def _frames(t_us: np.ndarray, can_id: int | np.ndarray, dlc: int, data: np.ndarray, label: int) -> _Frames:
    n = t_us.size
    return _Frames(
        t_us.astype(np.int64),
        np.broadcast_to(np.asarray(can_id, np.int64), (n,)).copy(),
        np.full(n, dlc, np.int64),
        data.astype(np.uint8),
        np.full(n, label, np.uint8),
    )


def _bursts(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Non-overlapping attack intervals (m, 2) in µs: ~one 0.25-0.6 s burst per 3.5 s, after a lead-in."""
    lead = min(1.0, 0.1 * duration)
    end = duration * 0.95
    m = max(3, int(round(duration / 3.5)))
    slot = (end - lead) / m
    length = np.minimum(rng.uniform(0.25, 0.6, m), 0.6 * slot)
    start = lead + np.arange(m) * slot + rng.uniform(0.0, 1.0, m) * (slot - length)
    return np.rint(np.stack([start, start + length], axis=1) * _US).astype(np.int64)


def _in_intervals(t_us: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """Boolean mask of times inside any [start, end) interval (intervals sorted, disjoint)."""
    pos = np.searchsorted(iv[:, 0], t_us, side="right") - 1
    ok = pos >= 0
    inside = np.zeros(t_us.size, dtype=bool)
    inside[ok] = t_us[ok] < iv[pos[ok], 1]
    return inside


def _flood(rng: np.random.Generator, iv: np.ndarray, step_us: int) -> np.ndarray:
    """Injection times every ``step_us`` (±5 % jitter) inside each interval."""
    ts = [np.arange(a, b, step_us) for a, b in iv]
    t = np.concatenate(ts)
    jitter = np.rint(rng.uniform(-0.05, 0.05, t.size) * step_us).astype(np.int64)
    return np.clip(t + jitter, np.repeat(iv[:, 0], [x.size for x in ts]), np.repeat(iv[:, 1] - 1, [x.size for x in ts]))


def _capture(
    vehicle: _Vehicle, kind: str, rng: np.random.Generator, duration: float
) -> tuple[_Frames, int | None, np.ndarray]:
    """One capture of ``kind``: benign traffic of ``vehicle`` plus the attack, sorted by time.

    Returns the frames, the target CAN ID (for targeted kinds) and the attack intervals in µs.
    """
    grid, sig = _drive(rng, duration)
    dur_us = int(round(duration * _US))
    iv = _bursts(rng, duration) if kind != "attack-free" else np.zeros((0, 2), np.int64)
    target: int | None = None
    if kind == "spoofing":
        target = vehicle.roles[("rpm", "gear")[int(rng.integers(2))]]
    elif kind == "masquerade":
        target = vehicle.roles[("speed", "rpm")[int(rng.integers(2))]]
    elif kind in ("replay", "suppress"):
        fast = vehicle.fast()
        target = fast[int(rng.integers(len(fast)))]

    parts: list[_Frames] = []
    for i, spec in enumerate(vehicle.ids):
        if spec.period > 0:
            period = spec.period * (1.0 + rng.normal(0.0, 30e-6))  # ECU clock drift
            phase = rng.uniform(0.0, spec.period)
            k = np.arange(int(np.ceil((duration - phase) / period)) + 1)
            sd = min(0.015 * spec.period, 0.4e-3)
            t = phase + k * period + rng.normal(0.0, sd, k.size)
        else:
            mean = spec.rate * duration
            gaps = rng.exponential(1.0 / spec.rate, int(mean + 6 * np.sqrt(mean) + 10))
            t = np.cumsum(gaps)
            k = np.arange(t.size)
        t_us = np.rint(t * _US).astype(np.int64)
        keep = (t_us >= 0) & (t_us < dur_us)
        t_us, k = t_us[keep], k[keep]
        counter = (int(rng.integers(16)) + k) & 0x0F
        tt = t_us / _US
        data = _payload(spec, tt, counter, grid, sig, vehicle.checksum, rng)
        label = np.zeros(t_us.size, np.uint8)
        if i == target and kind == "suppress":
            keep = ~_in_intervals(t_us, iv)
            t_us, data, label = t_us[keep], data[keep], label[keep]
        elif i == target and kind == "masquerade":
            hit = _in_intervals(t_us, iv)
            role = next(r for r, j in vehicle.roles.items() if j == i)
            # One forged value per burst, written with the victim's own timing, counter and checksum.
            burst = np.searchsorted(iv[:, 0], t_us[hit], side="right") - 1
            lo, hi = _FORGED[role]
            forged = rng.uniform(lo, hi, iv.shape[0])
            if role == "gear":
                forged = np.floor(forged)
            for b in range(iv.shape[0]):
                sel = np.flatnonzero(hit)[burst == b]
                data[sel] = _payload(
                    spec, tt[sel], counter[sel], grid, sig, vehicle.checksum, rng, override={role: float(forged[b])}
                )
            label[hit] = 1
        parts.append(
            _Frames(
                t_us, np.full(t_us.size, spec.can_id, np.int64), np.full(t_us.size, spec.dlc, np.int64), data, label
            )
        )

    if kind == "dos":
        t = _flood(rng, iv, 300)
        parts.append(_frames(t, 0x000, 8, np.zeros((t.size, 8), np.uint8), 1))
    elif kind == "fuzzing":
        t = _flood(rng, iv, 500)
        ids = rng.integers(0, 0x800, t.size)
        parts.append(_frames(t, ids, 8, rng.integers(0, 256, (t.size, 8), dtype=np.uint8), 1))
    elif kind == "spoofing":
        assert target is not None
        spec = vehicle.ids[target]
        role = next(r for r, j in vehicle.roles.items() if j == target)
        lo, hi = _FORGED[role]
        value = float(np.floor(rng.uniform(lo, hi + 1)) if role == "gear" else rng.uniform(lo, hi))
        one = _payload(
            spec,
            np.zeros(1),
            np.array([int(rng.integers(16))]),
            grid,
            sig,
            vehicle.checksum,
            rng,
            override={role: value},
        )
        t = _flood(rng, iv, 1000)
        parts.append(_frames(t, spec.can_id, spec.dlc, np.repeat(one, t.size, axis=0), 1))
    elif kind == "replay":
        assert target is not None
        src = parts[target]
        for a, b in iv:
            length = b - a
            s = int(rng.integers(0, max(a - length, 0) + 1))  # recorded earlier, before the burst
            sel = (src.t_us >= s) & (src.t_us < s + length)
            rec = src.take(np.flatnonzero(sel))
            ones = np.ones(rec.t_us.size, np.uint8)
            parts.append(_Frames(rec.t_us + (a - s), rec.can_id, rec.dlc, rec.data.copy(), ones))

    frames = _Frames.cat(parts)
    frames = frames.take(np.argsort(frames.t_us, kind="stable"))
    if kind == "suppress":
        frames.label[_in_intervals(frames.t_us, iv)] = 1
    return frames, (vehicle.ids[target].can_id if target is not None else None), iv


# --------------------------------------------------------------------------------------------- CSV


def _digits(x: np.ndarray, n: int) -> np.ndarray:
    """Decimal digits (ASCII) of non-negative ints, zero-padded to ``n`` columns."""
    out = np.empty((x.size, n), dtype=np.uint8)
    v = x.copy()
    for j in range(n - 1, -1, -1):
        out[:, j] = (v % 10).astype(np.uint8) + ord("0")
        v //= 10
    return out


def _csv_bytes(fr: _Frames) -> bytes:
    """Rows ``timestamp,arbitration_id,data_field,attack`` with CRLF ends, as in can-train-and-test.

    Each row is laid out in a fixed 42-byte slot; a mask drops the unused payload characters, so the
    whole file is one fancy-indexing pass instead of per-row string formatting.
    """
    n = fr.t_us.size
    abs_us = fr.t_us + START_TIMESTAMP * _US
    sec, frac = np.divmod(abs_us, _US)
    width = 42
    row = np.empty((n, width), dtype=np.uint8)
    row[:, 0:10] = _digits(sec, 10)
    row[:, 10] = ord(".")
    row[:, 11:17] = _digits(frac, 6)
    row[:, 17] = ord(",")
    for j, shift in enumerate((8, 4, 0)):
        row[:, 18 + j] = _HEX[(fr.can_id >> shift) & 0xF]
    row[:, 21] = ord(",")
    row[:, 22:38:2] = _HEX[fr.data >> 4]
    row[:, 23:38:2] = _HEX[fr.data & 0xF]
    row[:, 38] = ord(",")
    row[:, 39] = fr.label + ord("0")
    row[:, 40] = ord("\r")
    row[:, 41] = ord("\n")
    mask = np.ones((n, width), dtype=bool)
    mask[:, 22:38] = np.arange(16) < 2 * fr.dlc[:, None]
    return _HEADER + row[mask].tobytes()


# --------------------------------------------------------------------------------------------- generate


def is_synthetic(path: str | Path) -> bool:
    """True if ``path`` is a directory holding our ``synth.json`` marker (and so may be replaced)."""
    marker = Path(path) / MARKER
    try:
        d = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and d.get("generator") == GENERATOR


def check_target(out: Path) -> None:
    """Refuse to replace anything that is not empty and not ours: the user's files are never deleted."""
    if out.is_symlink():
        raise KdgatError(f"{out}: is a symbolic link; give the real directory to write the synthetic dataset to")
    if not out.exists():
        return
    if not out.is_dir():
        raise KdgatError(f"{out}: exists and is not a folder; refusing to replace it with a synthetic dataset")
    if any(out.iterdir()) and not is_synthetic(out):
        raise UsageError(
            f"{out}: directory is not empty and has no {MARKER} marker; "
            "refusing to overwrite it (choose another output or empty it)"
        )
    if is_synthetic(out):  # ours: but a file the user put in it since is theirs, and a re-run would delete it
        listed = json.loads((out / MARKER).read_text(encoding="utf-8")).get("files", [])
        ours = {MARKER, MANIFEST_NAME, *(f["path"] for f in listed)}
        theirs = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        foreign = [name for name in theirs if name not in ours]
        if foreign:
            raise UsageError(
                f"{out / foreign[0]}: not written by kdgat synth ({len(foreign)} such file(s)); refusing to replace "
                f"{out} (move them out or choose another output)"
            )


def write_captures(folder: Path, seed: int = 0, size: str = "small", duration_s: float | None = None) -> SynthSummary:
    """Write the synthetic captures and the ``synth.json`` marker into the empty ``folder``; returns the summary.

    ``size`` picks the per-file duration (:data:`SIZES`), ``duration_s`` overrides it.

    Labels: injected frames (dos, fuzzing, spoofing, replay) and the masquerader's replacement frames
    are ``attack=1``. A suppress attack injects nothing, so there would be no frame to label; instead
    every frame sent during a suppression interval is labelled 1, so that windows covering the
    suppression are attack windows and the interval can be recovered from the labels.
    """
    duration = check_parameters(seed, size, duration_s)
    vehicles: dict[str, _Vehicle] = {}
    vehicles["A"] = _vehicle(seed, 0)
    vehicles["B"] = _vehicle(seed, 1, other=vehicles["A"])
    files = []
    for split, kind, capture, vname in LAYOUT:
        rng = np.random.default_rng([seed, _VEHICLE_INDEX[vname], capture, _KIND_CODE[kind]])
        frames, target, iv = _capture(vehicles[vname], kind, rng, duration)
        rel = f"{split}/{kind}-{capture}.csv"
        (folder / split).mkdir(exist_ok=True)
        (folder / rel).write_bytes(_csv_bytes(frames))
        start = START_TIMESTAMP * _US
        files.append(
            SynthFile(
                path=rel,
                split=split,
                attack=kind,
                capture=capture,
                vehicle=vname,
                rows=int(frames.t_us.size),
                attack_rows=int(frames.label.sum()),
                target_id=None if target is None else f"{target:03X}",
                intervals=tuple(((start + int(a)) / _US, (start + int(b)) / _US) for a, b in iv),
            )
        )
    summary = SynthSummary(
        seed=seed,
        size=size,
        duration_s=duration,
        files=tuple(files),
        vehicle_ids={k: tuple(f"{s.can_id:03X}" for s in v.ids) for k, v in vehicles.items()},
    )
    marker = {"generator": GENERATOR, "format_version": FORMAT_VERSION, **summary.to_dict()}
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    return summary


def check_parameters(seed: int, size: str, duration_s: float | None) -> float:
    """Validate seed, size and duration; returns the seconds per file."""
    if size not in SIZES:
        raise UsageError(f"unknown synthetic size {size!r}; choose one of {', '.join(SIZES)}")
    duration = SIZES[size] if duration_s is None else float(duration_s)
    if not np.isfinite(duration) or not _MIN_DURATION <= duration <= _MAX_DURATION:
        raise UsageError(
            f"synthetic duration must be {_MIN_DURATION:g} to {_MAX_DURATION:g} s per file, got {duration_s!r}"
        )
    if int(seed) < 0:
        raise UsageError(f"synthetic seed must be >= 0, got {seed}")
    return duration
