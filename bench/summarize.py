"""Medians over rounds, then wagate's ratios to nginx and HAProxy from the same run."""
import statistics
import sys
from collections import defaultdict

rows = [line.split("\t") for line in open(sys.argv[1]) if line.strip()]
rss_kb = int(sys.argv[2]) if len(sys.argv) > 2 else 0
data = defaultdict(list)
for rnd, target, workload, conns, rps, p50, p99 in rows:
    data[(target, workload, int(conns))].append((float(rps), float(p50), float(p99)))


def med(key, i):
    return statistics.median(v[i] for v in data[key])


measured = {t for (t, _, _) in data}
# Peers in their usual order; `baseline` is an older build measured in the same run (BASELINE_BIN).
# `wagate_tpc` is the same build with server.runtime = "thread_per_core".
targets = [t for t in ["direct", "nginx", "haproxy", "floor", "floor_ct", "wagate", "wagate_tpc", "baseline"] if t in measured]
for workload in ["profile", "send"]:
    conns = max(c for (_, w, c) in data if w == workload)
    print(f"\n## {workload}  (c={conns}: req/s, p50, p99; c=1: p50 and p50 added over direct)")
    print(f"{'target':<11}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}{'c1 p50':>10}{'added':>9}")
    direct_c1 = med(("direct", workload, 1), 1) if ("direct", workload, 1) in data else 0.0
    for t in targets:
        rps, p50, p99 = (med((t, workload, conns), i) for i in range(3))
        c1 = med((t, workload, 1), 1)
        print(f"{t:<11}{rps:>10.0f}{p50:>10.0f}{p99:>10.0f}{c1:>10.0f}{c1 - direct_c1:>9.0f}")
    w_rps = med(("wagate", workload, conns), 0)
    w_added = med(("wagate", workload, 1), 1) - direct_c1
    for peer in [t for t in ["nginx", "haproxy", "floor", "floor_ct", "baseline"] if t in targets]:
        p_rps = med((peer, workload, conns), 0)
        p_added = med((peer, workload, 1), 1) - direct_c1
        print(f"wagate/{peer}: throughput {w_rps / p_rps:.2f}x, added p50 {w_added:.0f} µs vs {p_added:.0f} µs")
    if "wagate_tpc" in targets:
        t_rps = med(("wagate_tpc", workload, conns), 0)
        t_added = med(("wagate_tpc", workload, 1), 1) - direct_c1
        ratios = ", ".join(f"{t_rps / med((p, workload, conns), 0):.2f}x {p}"
                           for p in ["nginx", "floor", "floor_ct", "wagate"] if p in targets)
        print(f"wagate_tpc: throughput {ratios}; added p50 {t_added:.0f} µs")
if rss_kb:
    print(f"\nwagate RSS after the run: {rss_kb / 1024:.1f} MiB")
