"""The names of the threshold policies and their parser: what the command line needs of them.

Apart from :mod:`kdgat.evaluation.metrics` (which imports scikit-learn, a second of start-up) so that
``kdgat --help`` and the option defaults load without it.
"""

from __future__ import annotations

THRESHOLD_METHODS = ("f1", "margin", "youden", "fpr")
DEFAULT_POLICY = "margin"
# where validation holds benign windows only (attack-free training captures): a false-alarm budget on them
BENIGN_POLICY = "fpr:0.01"


def parse_policy(policy: str) -> tuple[str, dict]:
    """``"f1"``, ``"margin"``, ``"youden"`` or ``"fpr:<rate>"`` -> (method, keyword arguments)."""
    method, _, rate = policy.partition(":")
    if method == "fpr" and rate:
        try:
            max_fpr = float(rate)
        except ValueError:
            raise ValueError(f"threshold policy {policy!r}: the rate must be a number, e.g. fpr:0.01") from None
        if not 0.0 <= max_fpr <= 1.0:
            raise ValueError(f"threshold policy {policy!r}: the rate must lie within [0, 1]")
        return "fpr", {"max_fpr": max_fpr}
    if method in THRESHOLD_METHODS and not rate and method != "fpr":
        return method, {}
    choices = "f1, margin, youden, fpr:<rate> (e.g. fpr:0.01)"
    raise ValueError(f"unknown threshold policy {policy!r} (choose from: {choices})")
