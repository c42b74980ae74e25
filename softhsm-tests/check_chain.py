#!/usr/bin/env python3
"""Check an audit.jsonl hash chain without keyrite (docs/evidence-format.md shows the same recipe).

Usage: python3 check_chain.py OUT/audit.jsonl [OUT/report.json]
Prints the head hash; exits 1 naming the first bad line.
"""
import hashlib
import json
import sys

prev = "0" * 64
entries = []
with open(sys.argv[1], encoding="utf-8") as log:
    for n, line in enumerate(log, 1):
        entry = json.loads(line)
        claimed = entry.pop("hash")
        canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if entry["prev"] != prev or hashlib.sha256(canonical.encode()).hexdigest() != claimed:
            sys.exit(f"audit.jsonl line {n}: hash chain broken")
        entry["hash"] = claimed
        entries.append(entry)
        prev = claimed
if len(sys.argv) > 2:
    with open(sys.argv[2], "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    last = entries[-1]["event"]
    if last.get("kind") != "report_written" or last.get("report_sha256") != digest:
        sys.exit("report.json is not the report bound by the log's last entry")
    report = json.loads(open(sys.argv[2], encoding="utf-8").read())
    head = entries[-2]
    if report["log_head"] != {"seq": head["seq"], "hash": head["hash"]}:
        sys.exit("report.json's log_head is not the entry before report_written")
print(f"chain ok: {len(entries)} entries, head {prev}")
