#!/usr/bin/env python3
"""Holds N idle keep-alive HTTP/1.1 connections open to a server (issue #24, target 4).

Each connection sends one request (`GET PATH` with the given headers) and reads its answer, so
the server has a real, kept-alive connection with a finished exchange behind it; then every
connection stays open and silent until this script reads a line on stdin (or EOF), and closes
them. Prints `ready <open> <failed>` on stdout once all are established.

Usage: idle_conns.py --port 18083 --count 10000 --path /meta/whatsapp/v24.0/1/x -H 'X-API-Key: k'
"""
import argparse
import asyncio
import sys


async def one(port, request, opened, failed, hold):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        opened.append(writer)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        failed.append(1)
        return
    await hold.wait()
    writer.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--path", required=True)
    p.add_argument("-H", "--header", action="append", default=[])
    p.add_argument("--concurrency", type=int, default=200, help="connections opened at once")
    args = p.parse_args()
    headers = "".join(f"{h}\r\n" for h in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
    opened, failed, hold = [], [], asyncio.Event()
    tasks = []
    for _ in range(args.count):
        tasks.append(asyncio.ensure_future(one(args.port, request, opened, failed, hold)))
        if len(tasks) % args.concurrency == 0:
            while len(opened) + len(failed) < len(tasks):
                await asyncio.sleep(0.005)
    while len(opened) + len(failed) < args.count:
        await asyncio.sleep(0.01)
    print(f"ready {len(opened)} {len(failed)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
