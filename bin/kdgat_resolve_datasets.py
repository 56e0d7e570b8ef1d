#!/usr/bin/env python3
"""Resolve the pipeline's --datasets against the catalog (the DATASETS process of main.nf).

Reads the JSON of `kdgat datasets --format json --data-root DIR` and prints a TSV with one row per
dataset to run: its name, its root relative to DIR ('' when the catalog gives an absolute root), the
real path of that root (symlinks resolved, so Nextflow can stage the folder itself) and `one_trace`
(true when the catalog says its files are one recording: the ingest task's key holds it, so a
campaign resumed after the flag appeared ingests and splits again).

  --datasets all        every catalog dataset whose captures are all present (the others are
                        listed on stderr as skipped; none present is an error)
  --datasets a,b,c      exactly these, in this order; an unknown name or missing captures is an error

Standard library only: Nextflow runs it with whatever python3 the task has.
"""

import argparse
import json
import os
import sys


def resolve(spec, catalog, data_root):
    """[(name, relative root, real root, one_trace)] for SPEC; raises ValueError with a one-line message."""
    datasets = catalog.get("datasets", {})
    spec = (spec or "").strip()
    if not spec:
        raise ValueError("no dataset given: pass --datasets NAME[,NAME...] or --datasets all")
    if spec == "all":
        names = [name for name, row in datasets.items() if row.get("status") == "ok"]
        skipped = [name for name in datasets if name not in names]
        if skipped:
            sys.stderr.write("datasets skipped (captures not all present): %s\n" % ", ".join(skipped))
        if not names:
            raise ValueError("--datasets all: no catalog dataset has its captures under %s" % data_root)
    else:
        names = []
        for name in (part.strip() for part in spec.split(",")):
            if name and name not in names:
                names.append(name)
        unknown = [name for name in names if name not in datasets]
        if unknown:
            raise ValueError("unknown dataset(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(datasets))))
        for name in names:
            row = datasets[name]
            if row.get("status") != "ok":
                missing = "; ".join(row.get("missing_patterns", [])) or "no files"
                raise ValueError(
                    "dataset %s: captures %s under %s (missing: %s)"
                    % (name, row.get("status", "missing"), row.get("root", "?"), missing)
                )
    rows = []
    for name in names:
        root = datasets[name]["root"]
        relative = "" if os.path.isabs(root) else os.path.relpath(root, data_root)
        one_trace = "true" if datasets[name].get("one_trace") else "false"
        rows.append((name, relative, os.path.realpath(root), one_trace))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", required=True, help="'all' or a comma list of catalog names")
    parser.add_argument("--data-root", required=True, help="the --data-root given to `kdgat datasets`")
    parser.add_argument("catalog_json", help="output of `kdgat datasets --format json`")
    args = parser.parse_args(argv)
    with open(args.catalog_json) as handle:
        catalog = json.load(handle)
    try:
        rows = resolve(args.datasets, catalog, args.data_root)
    except ValueError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    sys.stdout.write("name\troot\tpath\tone_trace\n")
    for row in rows:
        sys.stdout.write("\t".join(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
