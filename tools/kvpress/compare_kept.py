"""Per layer, how many heads keep the whole needle: ours (tools/needle_survival.ts output) beside
kvpress's (tools/kvpress/kept_sets.py output) on the same sample, as a markdown table.

  python3 tools/kvpress/compare_kept.py OURS.txt KVPRESS.txt
"""
import re
import sys


def parse(path):
    text = open(path).read()
    head = next((l for l in text.splitlines() if "needle" in l and "layer" not in l), "")
    layers = {}
    for m in re.finditer(r"layer (\d+) head (\d+): kept (\d+)/(\d+)\s+needle ([01]+)", text):
        layers.setdefault(int(m.group(1)), []).append((int(m.group(3)), m.group(5)))
    return head.strip(), layers


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: compare_kept.py OURS.txt KVPRESS.txt")
    (oh, ours), (kh, kv) = parse(sys.argv[1]), parse(sys.argv[2])
    print(f"ours: {oh}  \nkvpress: {kh}\n")
    print("| layer | ours: slots kept per head | ours: heads keeping the whole needle | kvpress: slots kept per head | kvpress: heads keeping the whole needle |")
    print("|---|---|---|---|---|")
    for l in sorted(set(ours) | set(kv)):
        o, k = ours.get(l, []), kv.get(l, [])
        whole = lambda hs: sum(1 for _, p in hs if set(p) == {"1"})
        kept = lambda hs: "/".join(str(n) for n in sorted({n for n, _ in hs})) if hs else "-"
        print(f"| {l} | {kept(o)} | {whole(o)} of {len(o)} | {kept(k)} | {whole(k)} of {len(k)} |")


if __name__ == "__main__":
    main()
