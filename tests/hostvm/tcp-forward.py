#!/usr/bin/env python3
"""TCP forwarder for the nested worker host's link (e2e-vm.sh): each
LISTEN_ADDR:PORT=TARGET_ADDR:PORT argument accepts connections on the first
address and relays them, both ways, to the second. Used on the outer
machine (link address -> 127.0.0.1, where the dev stack's PostgreSQL and
Kafka listen) and inside the nested host (127.0.0.1 -> the link address,
so the broker's advertised 127.0.0.1:PORT works there too). Runs until
killed; prints "forwarding" once every listener is bound. Standard
library only."""
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


def handler(target_host, target_port):
    async def handle(reader, writer):
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), 10)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
    return handle


def split(endpoint):
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


async def main(pairs):
    servers = []
    for pair in pairs:
        listen, _, target = pair.partition("=")
        listen_host, listen_port = split(listen)
        target_host, target_port = split(target)
        servers.append(await asyncio.start_server(handler(target_host, target_port),
                                                  listen_host, listen_port, reuse_address=True))
    print("forwarding", " ".join(pairs), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    if len(sys.argv) < 2 or any("=" not in a for a in sys.argv[1:]):
        sys.exit("usage: tcp-forward.py LISTEN_ADDR:PORT=TARGET_ADDR:PORT...")
    asyncio.run(main(sys.argv[1:]))
