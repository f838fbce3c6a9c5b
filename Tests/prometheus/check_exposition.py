#!/usr/bin/env python3
"""Validates mxresolved's Prometheus text exposition with the reference parser, prometheus_client.

usage: check_exposition.py FILE... [--then FILE...]

Every FILE must parse (prometheus_client.parser.text_string_to_metric_families) into families that
all carry a type, are named mxresolved_*, whose counters end in _total and whose histograms have
cumulative buckets that never go down, a +Inf bucket equal to _count, and a non-negative _sum. Each
FILE after --then was taken later than every FILE before it: no counter sample (nor histogram
bucket, _sum or _count) may be smaller there. Prints one line per problem; exits 1 if any.
"""
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

MONOTONIC_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def samples(path, problems):
    """{(sample name, sorted labels): value} of the counters and histograms in one file."""
    text = open(path, encoding="utf-8").read()
    seen = {}
    for family in text_string_to_metric_families(text):
        where = f"{path}: {family.name}"
        if not family.name.startswith("mxresolved_"):
            problems.append(f"{where}: not under the mxresolved_ prefix")
        if family.type not in ("counter", "gauge", "histogram"):
            problems.append(f"{where}: type {family.type!r} (a HELP/TYPE line is missing or wrong)")
        if not family.documentation:
            problems.append(f"{where}: no HELP text")
        if family.type == "counter" and not any(s.name.endswith("_total") for s in family.samples):
            problems.append(f"{where}: counter samples do not end in _total")
        if family.type == "histogram":
            check_histogram(where, family, problems)
        if family.type in ("counter", "histogram"):
            for s in family.samples:
                if s.name.endswith(MONOTONIC_SUFFIXES):
                    seen[(s.name, tuple(sorted(s.labels.items())))] = s.value
    if not seen:
        problems.append(f"{path}: no counters at all")
    return seen


def check_histogram(where, family, problems):
    series = {}
    for s in family.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
        elif s.name.endswith("_count"):
            entry["count"] = s.value
    if not series:
        problems.append(f"{where}: histogram without samples")
    for key, e in series.items():
        label = f"{where}{dict(key)}"
        bounds = [b for b, _ in e["buckets"]]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            problems.append(f"{label}: bucket bounds not increasing: {bounds}")
        if not bounds or not math.isinf(bounds[-1]):
            problems.append(f"{label}: no +Inf bucket")
        values = [v for _, v in e["buckets"]]
        if any(b < a for a, b in zip(values, values[1:])):
            problems.append(f"{label}: cumulative bucket counts go down: {values}")
        if e["count"] is None or e["sum"] is None:
            problems.append(f"{label}: _count or _sum missing")
        elif values and values[-1] != e["count"]:
            problems.append(f"{label}: +Inf bucket {values[-1]} != _count {e['count']}")
        elif e["sum"] < 0:
            problems.append(f"{label}: negative _sum")


def main(argv):
    if "--then" in argv:
        i = argv.index("--then")
        before, after = argv[:i], argv[i + 1:]
    else:
        before, after = argv, []
    if not before:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = []
    earlier = [samples(p, problems) for p in before]
    later = [samples(p, problems) for p in after]
    for i, old in enumerate(earlier):
        for j, new in enumerate(later):
            for key, value in old.items():
                if key not in new:
                    problems.append(f"{after[j]}: {key} present in {before[i]} is gone")
                elif new[key] < value:
                    problems.append(f"{after[j]}: {key} went down from {value} to {new[key]}")
    for p in problems:
        print(p)
    total = sum(len(s) for s in earlier + later)
    print(f"checked {len(before) + len(after)} files, {total} counter/histogram samples: "
          f"{'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
