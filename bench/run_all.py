"""Every benchmark target in one run, one table (target, measured ratio or value, PASS/FAIL).

Order matters: the sweep (wall time, peak memory) runs first, in this process, so its peak memory is
the sweep's; it trains the base model that the latency and throughput items then reuse; the service
items (overhead, /comparison under load) start their own embedded service (or ``--stack real``)
last. Every ratio compares two things measured in this run.

Usage: python -m bench.run_all [--threads 2] [--stack embedded|real] [--skip sweep,service] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import latency, service, sweep, throughput  # noqa: E402
from bench.common import (  # noqa: E402
    Target,
    common_args,
    console,
    get_base,
    load_average,
    machine_record,
    merge_repeats,
    print_machine,
    print_target_lines,
    set_threads,
    targets_table,
)

ITEMS = ("sweep", "latency", "throughput", "service")
ORDER = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    for mod in (sweep, latency, throughput, service):
        mod.add_args(p)
    p.add_argument("--skip", default="", help=f"comma-separated items to leave out: {', '.join(ITEMS)}")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions of the latency, throughput and service items, interleaved; each target is the median "
        "with its range (the sweep, a wall-time target of several minutes, runs once)",
    )
    p.add_argument("--json", default="", help="also write the targets and the machine record to this file")
    args = p.parse_args()
    set_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    record = machine_record(args.threads)
    record["command"] = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "bench.run_all", *sys.argv[1:]])
    print_machine(record, "machine (load average at the start)")
    t0 = time.perf_counter()
    targets: list[Target] = []
    base = None
    if "sweep" not in skip:
        console.rule("the full sweep: wall time and peak memory")
        found, base = sweep.run(args)
        targets += found
    if {"latency", "throughput"} - skip and base is None:
        base = get_base(args.data, args.seed, args.retrain, args.latency_runs)
    repeated: list[list[Target]] = []
    for rep in range(args.repeat):  # interleaved: latency, throughput, service, then again, not each N times
        found: list[Target] = []
        if "latency" not in skip:
            console.rule(f"[{rep + 1}/{args.repeat}] int8 and prune-channels vs fp32")
            found += latency.run(args, base)
        if "throughput" not in skip:
            console.rule(f"[{rep + 1}/{args.repeat}] fp32 evaluation throughput vs matmul peak")
            found += throughput.run(args, base)
        if "service" not in skip:
            console.rule(
                f"[{rep + 1}/{args.repeat}] the service ({args.stack} stack): overhead, /comparison under load"
            )
            found += service.run(args)
        repeated.append(found)
    targets += merge_repeats(repeated)
    wall = time.perf_counter() - t0
    targets.sort(key=lambda t: ORDER.get(t.item, 99))
    record["load_avg_at_end"] = load_average()
    record["wall_s"] = round(wall, 1)
    console.rule("benchmark targets")
    print_machine(record, "run")
    console.print(targets_table(targets, "benchmark targets"))
    print_target_lines(targets)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": record, "targets": [asdict(t) for t in targets]}, indent=2))


if __name__ == "__main__":
    main()
