#!/usr/bin/env python3
"""Turns the walk-up benchmark's raw runs into results.json, a Markdown table
(README.md) and a PNG chart (walkup.png, via gnuplot).

usage: walkup_report.py WORKDIR RESULTS_DIR DURATION_SECONDS

Floors: the bytes that must cross the link divided by its rate.
  resume, cold kiosk: the compressed memory image (the disk can be demand-fetched);
  resume, warm kiosk: the memory chunks the previous version lacks;
  Suspend & Leave: what the new version adds to the store (the smallest
  upload any policy made on that link, i.e. isr's deduplicated delta).
"""
import glob
import json
import os
import platform
import re
import subprocess
import sys

POLICIES = ["copy-all", "whole-image", "isr-cold", "isr-warm"]
NAMES = {
    "copy-all": "1 copy-all (ISR 2002)",
    "whole-image": "2 whole memory image (OpenISR)",
    "isr-cold": "3 isr, cold cache",
    "isr-warm": "3 isr, warm cache",
}


def rate_bps(rate):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate)
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


def mb(n):
    return n / 1e6


def main():
    work, out, duration = sys.argv[1], sys.argv[2], int(sys.argv[3])
    state = json.load(open(os.path.join(work, "state.json")))
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
    doc = {"state": state, "links": links, "rows": rows, "duration_seconds": duration, "machine": machine,
           "disk_table": disk_table}
    json.dump(doc, open(os.path.join(out, "results.json"), "w"), indent=1)

    def x(v):
        return "–" if v is None else f"{v:.2f}×"

    md = []
    md.append("# Walk-up benchmark\n")
    md.append(f"Command: `sudo bash tests/bench/walkup.sh <results-dir>` — {machine}; whole run {duration // 60} min {duration % 60} s.\n")
    md.append(f"Parcel: {state['memory_mib']} MiB guest RAM with {state['fill_mib']} MiB filled (half decimal text, half random) "
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
    script = f"""
set terminal pngcairo noenhanced size 1100,560 font ",10"
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
plot "{dat}" using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), \\
     '' using 4 title columnheader(4), '' using 5 title columnheader(5), \\
     '' using 6 title columnheader(6) lc rgb "#999999"
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


if __name__ == "__main__":
    main()
