// hoover's pages: live counters on the dashboard, the live tail. No framework, no inline
// scripts (the Content-Security-Policy forbids them); chat text only ever goes in via
// textContent, never as HTML.
"use strict";

// Bytes as the server writes them on the page (decimal units, one decimal).
function humanBytes(n) {
  if (typeof n !== "number") return n;
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return u === 0 ? n + " B" : v.toFixed(1) + " " + units[u];
}

function dollars(n) {
  return typeof n === "number" ? "$" + n.toFixed(2) : n;
}

function dashboard() {
  const fields = document.querySelectorAll("[data-stat]");
  const pick = (stats, name) => {
    const index = stats.index || {};
    const t = stats.transcripts || {};
    const cost = (index.tokens_per_day || []).reduce(
      (sum, d) => (typeof d.cost_usd === "number" ? sum + d.cost_usd : sum), 0);
    const values = {
      messages: t.messages, sessions: t.sessions, projects: index.projects,
      tool_calls: t.tool_calls, responses: t.responses,
      output_tokens: t.tokens && t.tokens.output_tokens,
      cost: stats.index ? dollars(cost) : undefined,
      messages_today: index.messages_today, files: stats.files, versions: stats.versions,
      raw_bytes: humanBytes(stats.raw_bytes), store_bytes: humanBytes(stats.store_bytes),
      kept_ratio: stats.kept_ratio && stats.kept_ratio.toFixed(1) + "x",
      copy: stats.copy && (stats.copy.error ? "failing: see /api/stats"
        : stats.copy.bytes_behind === 0 && !stats.copy.log_behind ? "up to date"
        : humanBytes(stats.copy.bytes_behind) + " to copy"),
    };
    return values[name];
  };
  let last = null;
  async function tick() {
    try {
      const stats = await (await fetch("/api/stats", { credentials: "same-origin" })).json();
      const now = Date.now();
      fields.forEach((el) => {
        const v = pick(stats, el.dataset.stat);
        if (v !== undefined && v !== null) el.textContent = typeof v === "number" ? v.toLocaleString("en-US") : v;
      });
      const rate = document.querySelector('[data-stat="ingest_rate"]');
      if (rate && last && stats.index) {
        const per = (stats.index.messages - last.messages) / ((now - last.at) / 60000);
        rate.textContent = per.toFixed(0) + "/min";
      }
      if (stats.index) last = { messages: stats.index.messages, at: now };
    } catch (e) { /* the server may be restarting: try again */ }
  }
  tick();
  setInterval(tick, 2000);
}

function live() {
  const feed = document.getElementById("feed");
  const status = document.getElementById("live-status");
  const resume = document.getElementById("live-resume");
  const form = document.getElementById("live-filters");
  let following = true;
  const atBottom = () => feed.scrollHeight - feed.scrollTop - feed.clientHeight < 40;
  feed.addEventListener("scroll", () => {
    following = atBottom();
    if (following) resume.hidden = true;
  });
  resume.addEventListener("click", () => { feed.scrollTop = feed.scrollHeight; following = true; resume.hidden = true; });
  const filters = () => Object.fromEntries(new FormData(form).entries());
  const visible = (el) => {
    const f = filters();
    const text = el.querySelector(".text").textContent.toLowerCase();
    return (!f.project || (el.dataset.project || "").toLowerCase().includes(f.project.toLowerCase()))
      && (!f.role || el.dataset.role === f.role)
      && (!f.q || text.includes(f.q.toLowerCase()));
  };
  const refilter = () => feed.querySelectorAll(".msg").forEach((el) => el.classList.toggle("hidden", !visible(el)));
  form.addEventListener("input", refilter);
  form.addEventListener("submit", (e) => e.preventDefault());
  // New rows are the server's row template (in the page, `#live-row`), filled in as text.
  const blank = document.getElementById("live-row").content.firstElementChild;
  function row(m) {
    const el = blank.cloneNode(true);
    el.className = "msg role-" + (m.role || "");
    el.dataset.id = m.id; el.dataset.project = m.project || ""; el.dataset.role = m.role || "";
    el.querySelector("time").textContent = m.timestamp || "";
    el.querySelector(".project").textContent = m.project || "";
    const session = el.querySelector(".session");
    session.textContent = m.session || "";
    session.href = "/sessions/" + encodeURIComponent(m.session || "");
    el.querySelector(".role").textContent = m.role || "";
    const tool = el.querySelector(".tool");
    tool.textContent = m.tool || "";
    tool.hidden = !m.tool;
    el.querySelector(".text").textContent = m.text + (m.truncated ? " …" : "");
    return el;
  }
  // The page was rendered with the newest messages; the stream resumes after the last one.
  // Paused (`/live?paused=1`), the page holds no connection open, so a headless browser or a
  // screenshot tool sees it go idle; resuming picks up after the last message shown, so
  // nothing that arrived meanwhile is missed.
  let after = feed.dataset.after || "0";
  let source = null;
  const pause = document.getElementById("live-pause");
  function connect() {
    source = new EventSource("/api/live?after=" + encodeURIComponent(after));
    source.onopen = () => { status.textContent = "live"; };
    source.onerror = () => { status.textContent = "reconnecting…"; };
    source.onmessage = (e) => {
      const m = JSON.parse(e.data);
      after = String(m.id);
      if (feed.querySelector('[data-id="' + m.id + '"]')) return;
      const el = row(m);
      el.classList.toggle("hidden", !visible(el));
      feed.appendChild(el);
      while (feed.children.length > 2000) feed.removeChild(feed.firstChild);
      if (following) feed.scrollTop = feed.scrollHeight; else resume.hidden = false;
    };
  }
  function setPaused(paused) {
    if (paused) {
      if (source) source.close();
      source = null;
      status.textContent = "paused";
    } else if (!source) {
      status.textContent = "connecting…";
      connect();
    }
    pause.textContent = paused ? "resume" : "pause";
    history.replaceState(null, "", paused ? "?paused=1" : location.pathname);
  }
  pause.addEventListener("click", () => setPaused(source !== null));
  setPaused(new URLSearchParams(location.search).get("paused") === "1");
  feed.scrollTop = feed.scrollHeight;
}

const page = document.body.dataset.page;
if (page === "dashboard") dashboard();
if (page === "live") live();
