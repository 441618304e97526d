"""Seeded SPA builds for the benchmarks: a realistic mix of files and the next releases of it.

A build is `index.html`, a few mutable files (`favicon.ico`, `robots.txt`, `manifest.webmanifest`)
and content-hashed assets under `assets/`: JavaScript chunks with their source maps, CSS, fonts,
images and a little WebAssembly, sized from log-normal distributions per kind and scaled so the
build has the requested file count and total size. Content is pseudo-random (incompressible, as
minified and compressed assets nearly are); names carry the first hex digits of the sha256 of the
content, as Vite and webpack name them.

`next_release(base, k, share)` is the base build with `share` of its hashed assets replaced by new
content under new names (and a new `index.html`): what a typical next deploy changes. Unchanged
files are hard links into the base, so variants cost disk only for what changed. Variant `k` is
seeded by `k`, so variants differ from each other too (each is `share` new against the base and
against the other variants).

    python3 bench/workload.py DIR FILES TOTAL_MB [SEED]
"""

import base64
import hashlib
import json
import math
import os
import random
import shutil
import sys

# kind: (share of the files, extension, relative size weight, log-normal sigma)
KINDS = [
    ("js", 0.34, ".js", 1.0, 1.0),
    ("map", 0.30, ".js.map", 2.6, 1.0),
    ("css", 0.08, ".css", 0.6, 0.8),
    ("font", 0.04, ".woff2", 1.2, 0.4),
    ("image", 0.22, ".png", 2.0, 1.3),
    ("wasm", 0.02, ".wasm", 6.0, 0.8),
]
MUTABLE = {"favicon.ico": 4286, "robots.txt": 24, "manifest.webmanifest": 320}


def plan(files, total_bytes, seed):
    """The list of (kind, ext, size) for a build, in a fixed order for a seed."""
    rnd = random.Random(seed)
    n = max(files - 1 - len(MUTABLE), 1)
    shapes = []
    for kind, share, ext, weight, sigma in KINDS:
        for _ in range(max(1, round(n * share))):
            shapes.append((kind, ext, weight * math.exp(rnd.gauss(0, sigma))))
    shapes = shapes[:n]
    while len(shapes) < n:
        shapes.append(("js", ".js", math.exp(rnd.gauss(0, 1.0))))
    budget = max(total_bytes - sum(MUTABLE.values()) - 2048, n)
    scale = budget / sum(w for _, _, w in shapes)
    return [(kind, ext, max(64, int(w * scale))) for kind, ext, w in shapes]


def hashed_name(kind, i, ext, body):
    """`assets/js12-B0thXP3Q.js`: 8 base64url characters of the content's sha256, as Vite and
    Rollup name chunks (webpack's 8 hex digits are all digits in 2% of files, which deskew does
    not take for a hash, by design: see core/src/classify.rs)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()[:8]
    return f"assets/{kind}{i}-{digest}{ext}"


def write(path, body):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(body)


def index_html(names, tag):
    scripts = [n for n in names if n.endswith(".js")][:3]
    styles = [n for n in names if n.endswith(".css")][:2]
    head = "".join(f'<link rel="stylesheet" href="/{s}">' for s in styles)
    body = "".join(f'<script type="module" src="/{s}"></script>' for s in scripts)
    return f"<!doctype html><html><head><title>bench {tag}</title>{head}</head><body>{body}</body></html>".encode()


def generate(root, files, total_mb, seed=42):
    """Writes the base build into `root` (unless it is there already); returns its description."""
    meta_path = os.path.join(root, ".workload.json")
    want = {"files": files, "total_mb": total_mb, "seed": seed, "names": "base64url8"}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta["spec"] == want:
            return meta
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    dist = os.path.join(root, "dist")
    rnd = random.Random(seed)
    names, total = [], 0
    for i, (kind, ext, size) in enumerate(plan(files, total_mb * 1_000_000, seed)):
        body = rnd.randbytes(size)
        name = hashed_name(kind, i, ext, body)
        write(os.path.join(dist, name), body)
        names.append(name)
        total += size
    for name, size in MUTABLE.items():
        write(os.path.join(dist, name), rnd.randbytes(size))
        total += size
    html = index_html(names, "base")
    write(os.path.join(dist, "index.html"), html)
    total += len(html)
    meta = {"spec": want, "dist": dist, "files": len(names) + len(MUTABLE) + 1, "bytes": total, "hashed": names}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return meta


def next_release(meta, root, k, share=0.05):
    """Variant `k` of the next release: `share` of the hashed assets changed. Returns its dir."""
    out = os.path.join(root, f"next{k}")
    done = out + ".done"
    if os.path.exists(done):
        return out
    shutil.rmtree(out, ignore_errors=True)
    base = meta["dist"]
    rnd = random.Random(meta["spec"]["seed"] * 1000 + k)
    hashed = meta["hashed"]
    changed = set(rnd.sample(range(len(hashed)), max(1, round(len(hashed) * share))))
    names = []
    for i, name in enumerate(hashed):
        src = os.path.join(base, name)
        if i in changed:
            size = os.path.getsize(src)
            body = rnd.randbytes(size)
            kind, rest = os.path.basename(name).split("-", 1)
            new = hashed_name(kind.rstrip("0123456789"), f"{i}v{k}", "." + rest.split(".", 1)[1], body)
            write(os.path.join(out, new), body)
            names.append(new)
        else:
            dest = os.path.join(out, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.link(src, dest)
            names.append(name)
    for name in MUTABLE:
        os.link(os.path.join(base, name), os.path.join(out, name))
    write(os.path.join(out, "index.html"), index_html(names, f"next{k}"))
    open(done, "w").close()
    return out


if __name__ == "__main__":
    d, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    m = generate(d, n, mb, int(sys.argv[4]) if len(sys.argv) > 4 else 42)
    print(json.dumps({k: m[k] for k in ("dist", "files", "bytes")}))
