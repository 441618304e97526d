"""A counting HTTP/1.1 proxy: forwards every connection to the S3 server and counts the requests
that pass, by method. The benchmarks put it in front of SeaweedFS for untimed runs, so every
client's request count is measured the same way, outside the client.

    python3 bench/proxy.py LISTEN_PORT UPSTREAM_PORT COUNTS_FILE

Counts are written to COUNTS_FILE (JSON) after every request. Requests are parsed only as far as
needed to find where each ends: the request line, headers, then a Content-Length body or a
chunked one. Responses are piped back unparsed.
"""

import asyncio
import json
import os
import sys
import time

counts = {}
# Added before forwarding each request, to stand in for a store across a network (an S3 region
# is 10-50 ms away from a CI runner; loopback is 0.1 ms).
DELAY_S = float(os.environ.get("PROXY_DELAY_MS", "0")) / 1000
LOG = os.environ.get("PROXY_LOG")  # every request line appended here (after its Unix time), for looking into counts


async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def forward_requests(reader, writer, out):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if DELAY_S:
                await asyncio.sleep(DELAY_S)
            writer.write(head)
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            counts[method] = counts.get(method, 0) + 1
            if LOG:
                with open(LOG, "a") as f:
                    f.write(f"{time.time():.4f} {lines[0]}\n")
            with open(out, "w") as f:
                json.dump(counts, f)
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    writer.write(size_line)
                    size = int(size_line.split(b";")[0], 16)
                    writer.write(await reader.readexactly(size + 2))
                    if size == 0:
                        break
            else:
                left = int(headers.get("content-length", "0"))
                while left:
                    chunk = await reader.read(min(left, 1 << 16))
                    if not chunk:
                        return
                    writer.write(chunk)
                    left -= len(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(listen, upstream, out):
    async def client(reader, writer):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(forward_requests(reader, up_w, out), pipe(up_r, writer))

    server = await asyncio.start_server(client, "127.0.0.1", listen, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
