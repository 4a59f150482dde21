#!/usr/bin/env python3
"""Turns the walk-up benchmark's raw runs into results.json, a Markdown table
(README.md) and a PNG chart (walkup.png, via gnuplot).

usage: walkup_report.py WORKDIR RESULTS_DIR DURATION_SECONDS

Floors: the bytes that must cross the link divided by its rate.
  resume, cold kiosk: the compressed memory image (the disk can be demand-fetched);
  resume, warm kiosk: the memory chunks the previous version lacks;
  Suspend & Leave: what the new version adds to the store (the smallest
  upload any policy made on that link, i.e. isr's deduplicated delta).
Lazy memory (issue #17), the issue's goals as the floor column:
  cold: 1.15 x (device state + RAM hot set) / rate + 1.5 s (and <= 0.5x policy 2);
  warm: 3 s + (device state + RAM chunks the previous version lacks) / rate.
"""
import glob
import json
import os
import platform
import re
import subprocess
import sys

POLICIES = ["copy-all", "whole-image", "isr-cold", "isr-warm", "lazy-cold", "lazy-warm"]
NAMES = {
    "copy-all": "1 copy-all (ISR 2002)",
    "whole-image": "2 whole memory image (OpenISR)",
    "isr-cold": "3 isr, cold cache",
    "isr-warm": "3 isr, warm cache",
    "lazy-cold": "4 isr lazy memory, cold cache",
    "lazy-warm": "4 isr lazy memory, warm cache",
}
STAGES = ["authenticating", "checking out", "fetching", "restoring"]


def rate_bps(rate):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate)
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


def mb(n):
    return n / 1e6


def main():
    work, out, duration = sys.argv[1], sys.argv[2], int(sys.argv[3])
    state = json.load(open(os.path.join(work, "state.json")))
    lazy_path = os.path.join(work, "state-lazy.json")
    lstate = json.load(open(lazy_path)) if os.path.exists(lazy_path) else None
    kdf_path = os.path.join(work, "kdf.json")
    kdf = json.load(open(kdf_path)) if os.path.exists(kdf_path) else None
    links = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(work, "link-*.json")))]
    links.sort(key=lambda l: -rate_bps(l["rate"]))
    runs = {}
    for p in glob.glob(os.path.join(work, "runs", "*.json")):
        r = json.load(open(p))
        runs[(r["link"], r["policy"])] = r

    rows = []
    for link in links:
        bps = rate_bps(link["rate"]) / 8
        mine = {p: runs.get((link["link"], p)) for p in POLICIES}
        ups = [r["suspend_bytes_up"] for r in mine.values() if r]
        floor_up = min(ups) if ups else 0
        base = mine.get("whole-image")
        for p in POLICIES:
            r = mine[p]
            if not r:
                continue
            goal = None
            if p.startswith("lazy-"):
                if not lstate:
                    continue
                dev = lstate["device_state_cipher_bytes"]
                if p == "lazy-cold":
                    floor_down = dev + lstate["ram_hot_set_cipher_bytes"]
                    goal = 1.15 * floor_down / bps + 1.5
                else:
                    floor_down = dev + lstate["ram_new_cipher_bytes"]
                    goal = 3 + floor_down / bps
            else:
                floor_down = state["memory_new_cipher_bytes" if p == "isr-warm" else "memory_cipher_bytes"]
            row = {
                "link": link["link"],
                "rate": link["rate"],
                "rtt_ms": link["rtt_ms"],
                "ping_ms": link.get("ping_ms", ""),
                "policy": p,
                "resume_seconds": r["resume_seconds"],
                "resume_bytes_down": r["resume_bytes_down"],
                "resume_floor_seconds": floor_down / bps,
                "suspend_seconds": r["suspend_seconds"],
                "suspend_bytes_up": r["suspend_bytes_up"],
                "suspend_floor_seconds": floor_up / bps,
                "resume_vs_whole_image": r["resume_seconds"] / base["resume_seconds"] if base else None,
                "suspend_vs_whole_image": r["suspend_seconds"] / base["suspend_seconds"] if base else None,
                "goal_seconds": goal,
                "stages": {e["stage"]: e["seconds"] for e in r.get("resume_timeline", [])},
                "raw": r,
            }
            row["resume_vs_floor"] = row["resume_seconds"] / row["resume_floor_seconds"] if floor_down else None
            row["suspend_vs_floor"] = row["suspend_seconds"] / row["suspend_floor_seconds"] if floor_up else None
            rows.append(row)

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    machine = f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, QEMU under TCG"
    disk_path = os.path.join(out, "disk.txt")
    disk_table = ""
    if os.path.exists(disk_path):
        # bench_disk's table without the Qt Test chatter around it.
        lines = open(disk_path).read().splitlines()
        start = next((i for i, l in enumerate(lines) if l.startswith("bench_disk:")), 0)
        disk_table = "\n".join(l.rstrip() for l in lines[start:] if l.startswith("bench_disk:") or "|" in l)
    doc = {"state": state, "state_lazy": lstate, "kdf": kdf, "links": links, "rows": rows, "duration_seconds": duration, "machine": machine,
           "disk_table": disk_table}
    json.dump(doc, open(os.path.join(out, "results.json"), "w"), indent=1)

    def x(v):
        return "–" if v is None else f"{v:.2f}×"

    md = []
    md.append("# Walk-up benchmark\n")
    md.append(f"Command: `sudo bash tests/bench/walkup.sh <results-dir>` — {machine}; whole run {duration // 60} min {duration % 60} s.\n")
    guest = {"desktop": "the reference desktop (Debian 12, IceWM; UEFI + TPM; resources/guest-desktop)",
             "demo": "the demo guest"}.get(state.get("guest", "demo"), state.get("guest"))
    md.append(f"Parcel: {guest}, {state['memory_mib']} MiB guest RAM with {state['fill_mib']} MiB filled (half decimal text, half random) "
              f"and {state['disk_write_mib']} MiB written to a {state['disk_size'] >> 20} MiB disk; between suspends a tenth of both changes. "
              f"Memory image {mb(state['memory_image_bytes']):.0f} MB ({state['memory_chunks']} chunks), "
              f"{mb(state['memory_cipher_bytes']):.0f} MB compressed+encrypted, of which {mb(state['memory_new_cipher_bytes']):.0f} MB "
              f"are not in the previous version; disk {mb(state['disk_cipher_bytes']):.0f} MB in {state['disk_chunks']} chunks.\n")
    md.append("Store: Ceph radosgw (memstore OSD) in its own network namespace; link = tbf rate limit on both TUN ends plus a "
              "packet-level delay line (this kernel has no netem).\n")
    md.append("Resume = sign-in to the first VNC framebuffer update of the resumed display. "
              "S&L = Suspend & Leave until safe to leave (committed, unlocked, wiped). "
              "Floor = bytes that must cross ÷ link rate (see walkup_report.py).\n")
    md.append("| link | policy | resume s | MB down | × floor | × policy 2 | S&L s | MB up | × floor | × policy 2 |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        md.append(f"| {r['rate']}, {r['rtt_ms']} ms | {NAMES[r['policy']]} | {r['resume_seconds']:.1f} | "
                  f"{mb(r['resume_bytes_down']):.1f} | {x(r['resume_vs_floor'])} | {x(r['resume_vs_whole_image'])} | "
                  f"{r['suspend_seconds']:.1f} | {mb(r['suspend_bytes_up']):.1f} | {x(r['suspend_vs_floor'])} | "
                  f"{x(r['suspend_vs_whole_image'])} |")
    md.append("")
    lazy_rows = [r for r in rows if r["goal_seconds"] is not None]
    if lazy_rows:
        md.append("## Lazy memory against the goals of issue #17\n")
        md.append(f"Lazy parcel: {mb(lstate['ram_cipher_bytes']):.0f} MB of RAM chunks stored "
                  f"({lstate['ram_stored_chunks']} chunks, all-zero ones not stored), "
                  f"{mb(lstate['ram_new_cipher_bytes']):.1f} MB not in the previous version; device state "
                  f"{mb(lstate['device_state_cipher_bytes']):.2f} MB; RAM hot set {lstate['ram_hot_set_chunks']} chunks, "
                  f"{mb(lstate['ram_hot_set_cipher_bytes']):.1f} MB (fetched first by the memory hoard once the VM runs).\n")
        md.append("| link | policy | resume s | goal s | met | × policy 2 (goal ≤ 0.5× cold) | S&L MB up | × policy 2 up (goal ≤ 0.3×) |")
        md.append("|---|---|---:|---:|---|---:|---:|---:|")
        for r in lazy_rows:
            base = next((b for b in rows if b["link"] == r["link"] and b["policy"] == "whole-image"), None)
            up_ratio = r["suspend_bytes_up"] / base["suspend_bytes_up"] if base and base["suspend_bytes_up"] else None
            met = r["resume_seconds"] <= r["goal_seconds"] and (
                r["policy"] != "lazy-cold" or (r["resume_vs_whole_image"] or 1) <= 0.5)
            md.append(f"| {r['rate']}, {r['rtt_ms']} ms | {NAMES[r['policy']]} | {r['resume_seconds']:.1f} | "
                      f"{r['goal_seconds']:.1f} | {'yes' if met else 'no'} | {x(r['resume_vs_whole_image'])} | "
                      f"{mb(r['suspend_bytes_up']):.1f} | {x(up_ratio)} |")
        md.append("")
        md.append("Memory page faults in the guest's first 30 s of running (FUSE reads of the RAM file, each a fault "
                  "plus the kernel's readahead; service time on the kiosk's side), and the memory hoard when the "
                  "user left:\n")
        md.append("| link | policy | local | p50 ms | p99 ms | from the store | p50 ms | p99 ms | RAM chunks local at leave |")
        md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in lazy_rows:
            f = r["raw"].get("memory_faults", {})
            h = r["raw"].get("memory_hoard_at_leave", {})
            md.append(f"| {r['rate']} | {NAMES[r['policy']]} | {f.get('local', 0)} | {f.get('local_p50_ms', 0):.2f} | "
                      f"{f.get('local_p99_ms', 0):.2f} | {f.get('remote', 0)} | {f.get('remote_p50_ms', 0):.2f} | "
                      f"{f.get('remote_p99_ms', 0):.2f} | {h.get('done', 0)} / {h.get('total', 0)} |")
        md.append("")
    md.append("## Where resume time goes\n")
    md.append("Seconds per stage of the session's timeline (sign-in's Argon2id at the bench's minimal limits is in "
              "authenticating); `frame` = from Running to the first VNC frame; `prefetch` = the harness's fetch "
              "ahead of the session (policies 1 and 2).\n")
    md.append("| link | policy | prefetch | " + " | ".join(STAGES) + " | frame | total |")
    md.append("|---|---|---:|" + "---:|" * len(STAGES) + "---:|---:|")
    for r in rows:
        raw = r["raw"]
        frame = raw["resume_seconds"] - raw["running_seconds"]
        md.append(f"| {r['rate']} | {NAMES[r['policy']]} | {raw.get('prefetch_seconds', 0):.1f} | " +
                  " | ".join(f"{r['stages'].get(st, 0):.2f}" for st in STAGES) +
                  f" | {frame:.2f} | {r['resume_seconds']:.1f} |")
    md.append("")
    if kdf:
        md.append(f"**Sign-in at the default KDF limits** (Argon2id, {kdf['default_ops']} passes, "
                  f"{kdf['default_mem_bytes'] >> 20} MiB; best of 3 on this machine): {kdf['default_seconds']:.2f} s, "
                  f"against {kdf['minimal_seconds']:.3f} s at the minimal limits the runs above use: every resume "
                  f"figure above grows by {kdf['default_seconds'] - kdf['minimal_seconds']:.2f} s at a kiosk with "
                  f"default accounts.\n")
    md.append("Floors: " + "; ".join(
        f"{l['rate']}: resume cold {state['memory_cipher_bytes'] / (rate_bps(l['rate']) / 8):.1f} s, "
        f"warm {state['memory_new_cipher_bytes'] / (rate_bps(l['rate']) / 8):.1f} s"
        for l in links) + ".\n")
    md.append("![walk-up chart](walkup.png)\n")
    if doc["disk_table"]:
        md.append("## Disk data path (bench_disk)\n")
        md.append("```\n" + doc["disk_table"].strip() + "\n```\n")
    open(os.path.join(out, "README.md"), "w").write("\n".join(md))

    # The chart: resume and Suspend & Leave seconds per policy, one group per link.
    dat = os.path.join(out, "walkup.dat")
    with open(dat, "w") as f:
        f.write("label " + " ".join(f'"{NAMES[p]}"' for p in POLICIES) + ' "floor (cold kiosk)"\n')
        for what, key, fkey in (("resume", "resume_seconds", "resume_floor_seconds"),
                                ("Suspend & Leave", "suspend_seconds", "suspend_floor_seconds")):
            for link in links:
                vals = []
                mine = [r for r in rows if r["link"] == link["link"]]
                for p in POLICIES:
                    r = next((r for r in mine if r["policy"] == p), None)
                    vals.append(f"{r[key]:.2f}" if r else "0")
                vals.append(f"{mine[0][fkey]:.2f}" if mine else "0")
                f.write(f'"{what}\\n{link["rate"]}, {link["rtt_ms"]} ms" ' + " ".join(vals) + "\n")
    ncols = len(POLICIES) + 1
    plot = f'"{dat}" using 2:xtic(1) title columnheader(2), ' + ", ".join(
        f"'' using {c} title columnheader({c})" + (' lc rgb "#999999"' if c == ncols + 1 else "")
        for c in range(3, ncols + 2))
    script = f"""
set terminal pngcairo noenhanced size 1300,600 font ",10"
set output "{os.path.join(out, 'walkup.png')}"
set title "Walk-up resume (sign-in to first frame) and Suspend & Leave, seconds (QEMU/TCG)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "seconds"
set yrange [0:*]
set grid ytics
set key top right
set xtics scale 0
set bmargin 4
plot {plot}
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


if __name__ == "__main__":
    main()
