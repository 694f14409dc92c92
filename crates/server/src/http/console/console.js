// The operator's console: logs in with the session API, keeps the token in memory only,
// and shows the service's status, databases, jobs, room and lag, each view refreshed by
// polling its own route every two seconds. Controls an admin alone may use are shown to
// admins only; the service refuses them to others anyway. Every call is a route of the
// public HTTPS API; text from the service is put in the page as text, never as markup.
"use strict";

const REFRESH_MS = 2000;
const LAG_POINTS = 150; // five minutes of two-second samples

const state = { token: null, user: null, admin: false, timer: null, lag: [] };

const $ = (id) => document.getElementById(id);

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const reason = json && json.reason ? json.reason : response.statusText;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return json;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
}

function seconds(ms) {
  return ms === null || ms === undefined ? "" : (ms / 1000).toFixed(1) + " s";
}

// Views ------------------------------------------------------------------------------

async function refreshStatus() {
  const status = await api("GET", "/v1/admin/status");
  const banner = $("banner");
  banner.className = "banner " + status.status;
  const messages = [status.status];
  if (status.currentMessage) messages.push(status.currentMessage);
  if (status.pendingMaintenanceMessage) messages.push("next: " + status.pendingMaintenanceMessage);
  banner.textContent = messages.join(" — ");
  banner.hidden = false;
  const facts = $("status-facts");
  facts.replaceChildren();
  const fact = (name, value) => facts.append(element("dt", name), element("dd", value));
  fact("status", status.status);
  fact("set by an admin", status.admin_status);
  fact("service", status.service_id);
  fact("version", status.version);
  if (status.mirror) {
    const m = status.mirror;
    fact("mirror of", m.leader + " (" + m.state + ")");
    fact("applied", m.applied + " of " + m.leader_head + ", " + m.lag_changes + " behind, " + m.lag_secs.toFixed(1) + " s");
  }
  if (status.migration) fact("migration mode", "following " + status.migration.source);
  const reasons = $("reasons");
  reasons.replaceChildren(
    ...(status.reasons || []).map((r) => element("li", "READ_ONLY by itself: " + r.code + ": " + r.message)),
  );
  return status;
}

function dbButton(name, label, path, confirmText) {
  const button = element("button", label, { "data-db": name, "data-action": label });
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    try {
      await api("POST", "/" + encodeURIComponent(name) + path, {});
      await refreshDatabases();
    } catch (error) {
      showError(label + " " + name + ": " + error.message);
    }
  });
  return button;
}

async function refreshDatabases() {
  const databases = await api("GET", "/_all_dbs?verbose=true");
  const body = $("databases").tBodies[0];
  body.replaceChildren(
    ...databases.map((db) => {
      const row = element("tr", null, { "data-db": db.db_name });
      row.append(
        element("td", db.db_name),
        element("td", db.state, { class: "state" }),
        element("td", db.doc_count),
        element("td", bytes(db.doc_bytes)),
        element("td", bytes(db.log_bytes) + " to seq " + db.update_seq),
      );
      const actions = element("td");
      if (state.admin) {
        if (db.state === "Online") {
          actions.append(dbButton(db.db_name, "offline", "/_offline", "Take " + db.db_name + " offline?"));
        } else if (db.state === "Offline") {
          actions.append(dbButton(db.db_name, "online", "/_online"));
          actions.append(dbButton(db.db_name, "resync", "/_resync"));
        }
      }
      row.append(actions);
      return row;
    }),
  );
}

async function refreshJobs() {
  const jobs = await api("GET", "/v1/admin/daemon");
  const body = $("jobs").tBodies[0];
  body.replaceChildren(
    ...jobs.slice(0, 20).map((job) => {
      const row = element("tr", null, { "data-job": job.id });
      const progress = element("progress", null, { class: "progress", max: String(job.progressTotal || 1) });
      progress.value = job.status === "COMPLETED" ? job.progressTotal || 1 : job.progressCurrent || 0;
      const percent = job.progressTotal ? Math.round((100 * progress.value) / job.progressTotal) : 0;
      const cell = element("td");
      cell.append(progress, element("span", " " + percent + "%", { class: "percent" }));
      row.append(
        element("td", job.id),
        element("td", job.type),
        element("td", job.status, { class: "status" }),
        cell,
        element("td", seconds(job.totalTimeMS)),
        element("td", job.errorMessage || ""),
      );
      const actions = element("td");
      if (job.status === "QUEUED" || job.status === "STARTED" || job.status === "IN_PROGRESS") {
        const cancel = element("button", "cancel", { "data-action": "cancel" });
        cancel.addEventListener("click", async () => {
          try {
            await api("DELETE", "/v1/admin/daemon/" + job.id);
            await refreshJobs();
          } catch (error) {
            showError("cancel job " + job.id + ": " + error.message);
          }
        });
        actions.append(cancel);
      }
      row.append(actions);
      return row;
    }),
  );
  const backups = await api("GET", "/v1/admin/backups");
  const select = $("restore-name");
  const chosen = select.value;
  select.replaceChildren(...backups.map((b) => element("option", b.name, { value: b.name })));
  if (chosen) select.value = chosen;
}

function setBar(bar, label, used, total, text) {
  const share = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  $(bar).style.width = share.toFixed(1) + "%";
  $(label).textContent = text;
}

async function refreshUsage() {
  const usage = await api("GET", "/v1/admin/usage");
  const env = usage.env;
  setBar("pages-bar", "pages-label", env.used_pages, env.total_pages,
    "pages: " + bytes(env.used_bytes) + " used, " + bytes(env.free_bytes) + " free, of " + bytes(env.file_bytes));
  const fs = usage.dir;
  const used = fs.fs_total_bytes - fs.fs_available_bytes;
  setBar("disk-bar", "disk-label", used, fs.fs_total_bytes,
    "disk: " + bytes(fs.fs_available_bytes) + " available of " + bytes(fs.fs_total_bytes) + "; the directory takes " + bytes(fs.bytes));
}

async function refreshLag(status) {
  let lag = 0;
  const parts = [];
  if (status && status.mirror) {
    lag = Math.max(lag, status.mirror.lag_secs);
    parts.push("mirror: " + status.mirror.lag_secs.toFixed(1) + " s, " + status.mirror.lag_changes + " entries");
  }
  const sync = await api("GET", "/v1/admin/sync");
  for (const db of sync.databases || []) {
    if (db.lag_ms !== undefined && db.lag_ms !== null) {
      lag = Math.max(lag, db.lag_ms / 1000);
      parts.push("sync " + db.db + ": " + seconds(db.lag_ms));
    }
  }
  state.lag.push(lag);
  if (state.lag.length > LAG_POINTS) state.lag.shift();
  $("lag-text").textContent = parts.length ? parts.join("; ") : "no mirror or sync here";
  const top = Math.max(1, ...state.lag);
  const points = state.lag.map((value, i) => {
    const x = (300 * i) / (LAG_POINTS - 1);
    const y = 78 - (76 * value) / top;
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const chart = $("lag-chart");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  chart.replaceChildren(line);
}

async function refreshAll() {
  try {
    const status = await refreshStatus();
    await refreshDatabases();
    if (state.admin) {
      await refreshJobs();
      await refreshUsage();
      await refreshLag(status);
    }
    showError("");
  } catch (error) {
    if (error.status === 401) {
      loggedOut("the session ended: log in again");
      return;
    }
    showError(error.message);
  }
}

// Session ----------------------------------------------------------------------------

function loggedIn(user, admin) {
  state.user = user;
  state.admin = admin;
  $("who").textContent = user + (admin ? " (admin)" : "");
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  for (const node of document.querySelectorAll("[data-admin]")) node.hidden = !admin;
  refreshAll();
  state.timer = window.setInterval(refreshAll, REFRESH_MS);
}

function loggedOut(message) {
  window.clearInterval(state.timer);
  state.token = null;
  state.lag = [];
  $("who").textContent = "";
  $("app").hidden = true;
  $("banner").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  showError(message || "");
}

async function login(event) {
  event.preventDefault();
  try {
    const session = await api("POST", "/v1/auth/session", {
      username: $("user").value,
      password: $("password").value,
    });
    state.token = session.sessionToken;
    $("password").value = "";
    const me = await api("GET", "/v1/auth/session");
    loggedIn(me.user, me.admin);
  } catch (error) {
    showError("login: " + error.message);
  }
}

async function logout() {
  try {
    await api("DELETE", "/v1/auth/session");
  } finally {
    loggedOut("");
  }
}

async function setStatus(event) {
  event.preventDefault();
  try {
    await api("PUT", "/v1/admin/status", {
      status: $("status-mode").value,
      currentMessage: $("status-message").value,
      pendingMaintenanceMessage: $("status-pending").value,
    });
    await refreshStatus();
  } catch (error) {
    showError("status: " + error.message);
  }
}

async function startBackup(event) {
  event.preventDefault();
  const name = $("backup-name").value.trim();
  try {
    await api("POST", "/v1/admin/daemon/backup", name ? { name } : {});
    await refreshJobs();
  } catch (error) {
    showError("backup: " + error.message);
  }
}

async function startRestore(event) {
  event.preventDefault();
  const name = $("restore-name").value;
  if (!name || !window.confirm("Replace every database with the backup " + name + "?")) return;
  try {
    await api("POST", "/v1/admin/daemon/restore", { url: name });
    await refreshJobs();
  } catch (error) {
    showError("restore: " + error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("status-form").addEventListener("submit", setStatus);
  $("backup-form").addEventListener("submit", startBackup);
  $("restore-form").addEventListener("submit", startRestore);
});
