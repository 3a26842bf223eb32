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
row("a tree restore into a target with a planted `claude..` root, a 249-byte name and a link out", "restore_contained",
    lambda r: f"{r['planted_outside_restored']} files written outside the target; a {r['long_name_bytes']}-byte name restored; {r['skipped_through_link']} file behind a link skipped with a warning, {r['restored_beside_it']} beside it restored")
row("a push-only key writing under another laptop's source", "key_sources",
    lambda r: f"{r['foreign_versions_refused']} version and {r['foreign_deletions_refused']} deletion refused (Forbidden, naming hoover-source); its own source pushed; a push-only key without hoover-source refused at load ({r['unbound_push_key_refused']})")
row("authorized_keys lines hoover does not understand", "authorized_keys",
    lambda r: f"{r['lines_refused']} lines refused alone, each logged with its number; {r['from_mismatch_refused']} from= mismatch refused; {r['keys_still_working']} other keys still log in; a group/world-writable file refused at login and at start")
row("a symbolic link made inside a watched root", "watch_links",
    lambda r: f"{r['links_made']} links (to a file, to a tree) made while `watch` ran; {r['uploaded_through_links']} files uploaded through them")
row("a search paged past the window (offset 10^12), long and many-term queries", "deep_pages",
    lambda r: f"{r['refused']} requests refused with a message over HTTP and SSH; the server answering afterwards: {r['server_up_after']}")
row("SIGTERM while the indexer has a backlog", "sigterm_backlog",
    lambda r: f"stopped {r['stop_ms']} ms after SIGTERM with {r['versions_in_backlog']} versions queued at 0.5 s each; the next start indexed every message")
row("slow, idle and too many HTTP clients", "http_bounds",
    lambda r: f"with --max-http-connections {r['max_http_connections']} and --http-timeout {r['header_timeout_s']}: {r['slow_and_idle_closed']} slow/idle connections closed; {r['live_streams_refused']} live stream over half the cap refused; connections refused at accept over the cap: {r['refused_over_cap']}")
row("one address or one connection taking SSH resources", "ssh_bounds",
    lambda r: f"{r['preauth_refused']} connection over {r['preauth_per_address']} logging in from one address refused while another address synced; {r['channel_refused']} channel over {r['channels_per_connection']} per connection refused")
row("files created under umask 000", "owner_only",
    lambda r: f"{r['store_entries_checked']} store entries, the host key, client state and a restored file checked: {r['open_to_others']} open to group or others")
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
