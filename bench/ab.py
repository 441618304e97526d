"""Two deskew binaries against each other, interleaved (A B A B), on a benchmark workload: the
measurement behind a change that a figure's peers cannot show (the store far away, say).

    python3 bench/ab.py OLD NEW [--size 5k|50k] [--mode next|noop] [--runs 5] [--delay-ms 20]

Each binary publishes the base release into its own prefix of one SeaweedFS, then, each run,
the next release (`next`: 5% changed, a new variant every run) or the same release again
(`noop`: a retried pipeline). With --delay-ms, every request goes through bench/proxy.py, which
waits that long before forwarding it (a store across a network instead of on loopback).
Prints each binary's median, min, max and runs (seconds) on stdout, as JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import workload  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--size", default="5k", choices=sorted(bench.SIZES))
    ap.add_argument("--mode", default="next", choices=["next", "noop"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=0)
    args = ap.parse_args()
    bins = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    ctx = bench.Ctx(argparse.Namespace(runs=args.runs, smoke=False, probe_seconds=2, all_peers_50k=False))
    meta = ctx.workload(args.size)
    times = {name: [] for name in bins}
    with bench.SeaweedFS(ctx.work) as s3:
        os.environ["PROXY_DELAY_MS"] = str(args.delay_ms)
        proxy = bench.CountingProxy(s3.port, ctx.work) if args.delay_ms else None
        endpoint = proxy.endpoint if proxy else None

        def publish(name, dist, release, through=None):
            argv = bench.deskew_publish(s3, dist, name, release, endpoint=through)
            argv[0] = bins[name]
            return argv

        try:
            for name in bins:
                bench.run(publish(name, meta["dist"], "base"), env=s3.env)
            variant = {name: 0 for name in bins}
            for i in range(args.runs + 1):  # run 0 warms up
                for name in bins:
                    if args.mode == "noop":
                        dist, release = meta["dist"], "base"
                    else:
                        variant[name] += 1
                        dist, release = workload.next_release(meta, ctx.workload_dir(args.size), variant[name]), f"n{variant[name]}"
                    bench.warm_cache(dist)
                    t = time.perf_counter()
                    subprocess.run(publish(name, dist, release, endpoint), env=s3.env, check=True)
                    if i:
                        times[name].append(time.perf_counter() - t)
                        bench.log(f"    run {i}/{args.runs} {name}: {times[name][-1]:.3f} s")
        finally:
            if proxy:
                proxy.stop()
    out = {"size": args.size, "mode": args.mode, "delay_ms": args.delay_ms, "results": {name: bench.summary(v) for name, v in times.items()}}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
