#!/usr/bin/env bash
# Writes the "Last run" table of docs/reliability.md from what the reliability tests and the
# fuzz run recorded in target/tmp/reliability/*.json (run scripts/test.sh and scripts/fuzz.sh
# first). The figures in that table come from test output only.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import glob, json, os, datetime, re
reports = {}
for path in sorted(glob.glob("target/tmp/reliability/*.json")):
    name = os.path.basename(path)[:-5]
    reports[name] = (json.load(open(path)), datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC))
rows = []
def row(what, name, text):
    if name in reports:
        r, at = reports[name]
        rows.append(f"| {what} | {text(r)} | {at:%Y-%m-%d %H:%M} UTC |")
    else:
        rows.append(f"| {what} | not run | |")
row("server killed (SIGKILL) during syncs and indexing", "server_kills",
    lambda r: f"{r['kills']} kills survived ({r['interrupted_syncs']} inside a sync); {r['versions_checked']} versions verified; {r['files_restored']} files restored byte for byte; {r.get('told_versions_restored', 'not counted')} versions that syncs were told are stored restored to their BLAKE3; {r['messages_indexed_once']} messages indexed once")
row("server killed at each named point of the ingest path", "crash_points",
    lambda r: f"{len(r['points'])} of {len(r['points'])} points reached and survived ({', '.join(r['points'])}); {r['versions_checked']} versions verified; every file restored, every message indexed once")
row("agent (hoover watch) killed (SIGKILL) at random moments", "agent_kills",
    lambda r: f"{r['kills']} kills survived ({r['interrupted']} left work unshipped, {r['mid_push']} of them mid-push); store clean after each; the next start sent {r['chunks_sent_after']} chunks for {r['chunks_missing_after']} missing; {r['files_restored']} files restored byte for byte")
row("connections cut at random byte offsets", "connection_cuts",
    lambda r: f"{r['syncs_cut']} of {r['syncs']} syncs cut; store clean after each; {r['files_restored']} files restored byte for byte; the next sync resent nothing")
row("two laptops pushing the same chunks at once", "two_laptops",
    lambda r: f"{r['files_each']} files each; {r['unique_bytes']} unique bytes stored for {r['transcript_bytes_each']} bytes of transcripts on each laptop")
row("a full disk (ENOSPC injected at the store's write seam)", "disk_full",
    lambda r: f"new data refused, saying \"{r['refused_saying']}\"; {r['versions_kept']} versions kept intact; after space returned {r['files_restored_after']} files restored byte for byte")
row("a read-only store directory (and a read-only version log)", "read_only",
    lambda r: f"{r['cases']} of {r['cases']} refused at start, naming the directory or file; the read-only store checked by `hoover verify`: {r.get('read_only_versions_verified', 'not run')} versions clean; {r['files_restored_after']} files restored byte for byte once writable")
row("connection slots held by silent clients", "limits_slots",
    lambda r: f"with --max-connections {r['max_connections']}: {r['refused_over_limit']} over the limit refused; {r['silent_closed_at_login_deadline']} silent connections closed at the login deadline; then an honest sync and restore")
row("stalled clients (half frame, open batch, unread replies)", "limits_stalls",
    lambda r: f"{r['stalled_closed']} of 3 closed after the {r['stall_timeout_s']} s stall time-out (the non-reader after {r['unread_requests_before_cut']} requests); meanwhile {r['honest_files_restored']} files synced and restored byte for byte; the open batch dropped")
row("a batch over --max-batch-chunks", "limits_batch",
    lambda r: f"with a limit of {r['max_batch_chunks']}: {r['refused']} over-limit requests refused whole, none of their chunks stored; the same connection then committed within it; `hoover sync` of a {r['sync_file_bytes']:,}-byte file exits 1 naming the flag")
row("nasty transcript lines through sync, store, index and web page", "bad_transcripts",
    lambda r: f"{r['bytes_restored_exactly']:,} bytes restored exactly; {r['messages_indexed']} readable messages indexed, searched and shown escaped; {r['malformed_counted']} bad lines counted (BOM, CRLF and escaped NUL lines read; half line waits)")
row("hostile protocol client", "hostile",
    lambda r: f"{r['refused']} hostile requests refused; store clean afterwards: {r['store_clean']}")
for t in ["frame", "message", "transcript_line"]:
    row(f"fuzzing: {t.replace('_', ' ')}", f"fuzz-{t}",
        lambda r: f"{r['executions']:,} inputs in {r['seconds']} s, {r['crashes']} crashes")
table = "| fault class | last run | when |\n|---|---|---|\n" + "\n".join(rows)
doc = open("docs/reliability.md").read()
doc, n = re.subn(r"(<!-- BEGIN LAST RUN -->\n)(?:.*?\n)?(<!-- END LAST RUN -->)", lambda m: m.group(1) + table + "\n" + m.group(2), doc, flags=re.S)
assert n == 1, "docs/reliability.md lacks the LAST RUN markers"
open("docs/reliability.md", "w").write(doc)
print(table)
PY
