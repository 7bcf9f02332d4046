// The operator's dashboard: one page, three views (#/ overview, #/jobs, #/jobs/<id>), kept
// current by one EventSource on /ui/events.
//
// Every value from the server goes into the page as text (textContent, text nodes), never
// as markup: a job's owner, its detail or its algorithm's output may say anything.
"use strict";

(() => {
  const API = "api/";
  // The statuses, for the jobs filter only: everything shown comes with its text from the
  // server (core/status.py holds the numbers and texts).
  const STATUSES = [
    [1, "Warming up"],
    [10, "Job started"],
    [20, "Configuring volumes"],
    [30, "Provisioning success"],
    [31, "Data provisioning failed"],
    [32, "Algorithm provisioning failed"],
    [40, "Running algorithm"],
    [50, "Filtering results"],
    [60, "Publishing results"],
    [70, "Job completed"],
  ];
  const RECEIPT_SHOWN = 64 * 1024; // a receipt up to this size is shown, pretty-printed
  const LOG_SHOWN = 256 * 1024; // a configuration log up to this size is shown

  // -- DOM ----------------------------------------------------------------------------

  /** An element; string children become text nodes, props set attributes (never HTML). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function fill(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  const byId = (id) => document.getElementById(id);

  // -- formatting ---------------------------------------------------------------------

  function num(n, digits = 1) {
    if (n === null || n === undefined || Number.isNaN(n)) return "—";
    if (Number.isInteger(n)) return String(n);
    return n.toFixed(digits).replace(/\.?0+$/, "");
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
  }

  function seconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 10) return `${s.toFixed(2)} s`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const [big, small, rest, unit] =
      s < 3600
        ? [Math.floor(s / 60), "min", Math.round(s % 60), "s"]
        : [Math.floor(s / 3600), "h", Math.round((s % 3600) / 60), "min"];
    return rest ? `${big} ${small} ${rest} ${unit}` : `${big} ${small}`;
  }

  /** "1 core", "2 cores", "0.5 cores". */
  function count(n, one, many = `${one}s`) {
    return `${num(n)} ${n === 1 ? one : many}`;
  }

  function limit(s) {
    return s ? seconds(s) : "none";
  }

  function clock(epoch) {
    if (!epoch) return "—";
    const d = new Date(epoch * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    const today = new Date().toDateString() === d.toDateString();
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (today) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function shortOwner(owner) {
    return owner && owner.length > 14 ? `${owner.slice(0, 6)}…${owner.slice(-4)}` : owner || "—";
  }

  const now = () => Date.now() / 1000;

  // -- statuses -----------------------------------------------------------------------

  /** waiting, running, done or failed: a stopped or timed-out job did not complete. */
  function statusClass(status, reason) {
    if (status === 1) return "waiting";
    if (status === 31 || status === 32) return "failed";
    if (status === 70) return reason && reason !== "completed" ? "failed" : "done";
    return "running";
  }

  function isFailed(job) {
    return statusClass(job.status, job.terminationReason) === "failed";
  }

  function badge(status, text, reason, kind = statusClass(status, reason)) {
    return h(
      "span",
      { class: `status s-${kind}`, "data-status": status },
      h("span", { class: "status-num", text: status }),
      " ",
      h("span", { class: "status-text", text: text }),
    );
  }

  function reasonText(job) {
    const parts = [];
    if (job.terminationReason && job.terminationReason !== "completed") {
      parts.push(job.terminationReason);
    }
    if (job.detail) parts.push(job.detail);
    if (job.stopRequested && !job.final) parts.push("stop requested");
    return parts.join(": ");
  }

  // -- timelines ----------------------------------------------------------------------

  function spans(job) {
    const end = job.final ? job.dateFinished || now() : now();
    return (job.phases || []).map((p) => ({
      name: p.name,
      start: p.start,
      on: p.end === null,
      seconds: Math.max(0, (p.end === null ? end : p.end) - p.start),
    }));
  }

  /** A stacked bar: each phase a segment, as wide as its share of the phases' time. */
  function timelineBar(job, big = false) {
    const bar = h("div", { class: big ? "timeline timeline-big" : "timeline" });
    const parts = spans(job);
    const total = parts.reduce((sum, p) => sum + p.seconds, 0);
    for (const p of parts) {
      const seg = h("span", {
        class: `seg ph-${p.name}${p.on ? " seg-on" : ""}`,
        title: `${p.name}: ${seconds(p.seconds)}${p.on ? " (still on)" : ""}`,
        "data-phase": p.name,
      });
      seg.style.width = `${total > 0 ? (100 * p.seconds) / total : 100 / parts.length}%`;
      bar.append(seg);
    }
    if (!parts.length) bar.append(h("span", { class: "seg seg-none", title: "not started" }));
    return bar;
  }

  function jobSeconds(job) {
    const end = job.final ? job.dateFinished : now();
    return end && job.dateCreated ? end - job.dateCreated : null;
  }

  // -- the server ---------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorOf(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.error === "string") message = body.error;
      else if (body.errors) message = JSON.stringify(body.errors);
    } catch (_) {
      // not JSON: the status line says it
    }
    return new HttpError(response.status, message);
  }

  /** The response to a GET, or an HttpError (a 403 also shows the refusal on the page). */
  async function get(path, options = {}) {
    let response;
    try {
      response = await fetch(path, { cache: "no-store", ...options });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      notice("The server does not answer; the page carries on when it is back.");
      throw e;
    }
    if (response.status === 403) {
      const error = await errorOf(response);
      denied(error.message);
      throw error;
    }
    if (!response.ok) throw await errorOf(response);
    notice(null);
    allowed();
    return response;
  }

  async function getJSON(path, options) {
    return (await get(path, options)).json();
  }

  function notice(text) {
    const el = byId("notice");
    el.hidden = !text;
    el.textContent = text || "";
  }

  let isDenied = false;

  function denied(message) {
    isDenied = true;
    const el = byId("denied");
    fill(
      el,
      h("strong", { text: "Access refused (403)." }),
      " This dashboard is open only to the operator's networks (",
      h("code", { text: "[server] metrics_allow" }),
      " in the server's configuration), and this address is not in them. The server said: ",
      h("q", { text: message }),
    );
    el.hidden = false;
    byId("view").hidden = true;
    setConnection("refused");
  }

  function allowed() {
    if (!isDenied) return;
    isDenied = false;
    byId("denied").hidden = true;
    byId("view").hidden = false;
  }

  function failure(container, what, e) {
    if (e && e.name === "AbortError") return;
    if (e instanceof HttpError && e.status === 403) return; // the banner says it
    fill(container, h("p", { class: "error", text: `Could not read ${what}: ${e.message || e}` }));
  }

  // -- the live stream ----------------------------------------------------------------

  function setConnection(state) {
    const el = byId("conn");
    const text = { live: "live", reconnecting: "reconnecting…", refused: "refused" };
    el.textContent = text[state] || "connecting…";
    el.className = `conn conn-${state}`;
  }

  const live = {
    source: null,
    lastId: null, // the last event this page read
    readyBefore: false,
    timer: null,

    connect() {
      const query = this.lastId === null ? "" : `?lastEventId=${this.lastId}`;
      const source = new EventSource(`events${query}`);
      this.source = source;
      source.addEventListener("ready", (e) => this.ready(JSON.parse(e.data)));
      source.addEventListener("status", (e) => this.status(JSON.parse(e.data)));
      source.addEventListener("gap", () => refreshAll());
      source.addEventListener("error", () => {
        if (!isDenied) setConnection("reconnecting");
        // The browser reconnects by itself after a dropped connection; not after an
        // answer that was no event stream (a 403, a proxy's 502): then the page does.
        if (source.readyState === EventSource.CLOSED) this.retry(0);
      });
    },

    close() {
      clearTimeout(this.timer);
      if (this.source) this.source.close();
      this.source = null;
    },

    /** Find out why the stream was refused (a 403 shows on the page), then try again. */
    retry(delay) {
      this.close();
      clearTimeout(this.timer);
      this.timer = setTimeout(async () => {
        try {
          await get(`${API}overview`);
        } catch (_) {
          this.retry(3000);
          return;
        }
        this.connect();
      }, delay);
    },

    ready(data) {
      setConnection("live");
      // After a reconnect anything may have changed (the server restarted, events were
      // pruned): read it all afresh. The first time, only if events came since the read.
      if (this.readyBefore || data.lastEventId > shownEventId) refreshAll();
      this.readyBefore = true;
      if (this.lastId === null) this.lastId = data.lastEventId;
    },

    status(event) {
      this.lastId = event.id;
      if (view && view.onEvent) view.onEvent(event);
    },
  };

  let shownEventId = 0; // the newest lastEventId of the data on the page

  function shown(data) {
    if (typeof data.lastEventId === "number") {
      shownEventId = Math.max(shownEventId, data.lastEventId);
    }
    return data;
  }

  function refreshAll() {
    if (view) view.refresh();
  }

  /** fn, run once `ms` after the last of a burst of calls (typing). */
  function debounce(fn, ms) {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  /** fn, run `ms` after the first of a burst of calls, once for the whole burst: events
   * that never stop coming still get a refresh every `ms`. */
  function coalesce(fn, ms) {
    let timer = null;
    return () => {
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
    };
  }

  /** fn (async, returning data) whose answers are taken in the order it was called: one
   * that comes after a later call's answer was taken is dropped. */
  function ordered(fn) {
    let called = 0;
    let taken = 0;
    return async (...args) => {
      const mine = ++called;
      const data = await fn(...args);
      if (mine < taken) return null;
      taken = mine;
      return data;
    };
  }

  // -- overview -----------------------------------------------------------------------

  function meter(label, used, total, unit, key) {
    const share = total > 0 ? Math.min(1, used / total) : 0;
    const fillEl = h("div", { class: "meter-fill" });
    fillEl.style.width = `${(100 * share).toFixed(1)}%`;
    const level = share >= 0.9 ? " meter-high" : share >= 0.7 ? " meter-mid" : "";
    const value = total > 0 ? `${num(used)} / ${num(total)} ${unit}` : `none in the pool`;
    return h(
      "div",
      { class: `meter${level}`, "data-meter": key },
      h(
        "div",
        { class: "meter-head" },
        h("span", { class: "meter-label", text: label }),
        h("span", { class: "meter-value", text: value }),
      ),
      h("div", { class: "meter-track" }, fillEl),
    );
  }

  function pair(term, ...value) {
    return [h("dt", { text: term }), h("dd", {}, ...value)];
  }

  function card(title, props, ...children) {
    return h(
      "section",
      { class: "card", ...props },
      title ? h("h2", { class: "card-title" }, title) : null,
      ...children,
    );
  }

  /** A table; a heading "Name:num" is of a column of numbers (aligned right). */
  function table(head, rows, empty, props = {}) {
    if (!rows.length) return h("p", { class: "muted", text: empty });
    return h(
      "table",
      { class: "grid", ...props },
      h("thead", {}, h("tr", {}, head.map(heading))),
      h("tbody", {}, rows),
    );
  }

  function heading(text) {
    const [name, kind] = text.split(":");
    return h("th", { class: kind || null, text: name });
  }

  function perJob(per) {
    return [
      count(per.cpu, "core"),
      `${num(per.ram)} GiB RAM`,
      `${num(per.disk)} GiB disk`,
      per.gpu ? count(per.gpu, "GPU") : "no GPU",
    ].join(" · ");
  }

  function environmentCard(env, pool) {
    const tags = [
      h("span", { class: "tag", title: "OCI runtime", text: env.ociRuntime }),
      h("span", {
        class: env.network ? "tag tag-warn" : "tag",
        title: "the algorithm's network",
        text: env.network ? "network on" : "no network",
      }),
      env.cpuType ? h("span", { class: "tag", title: "CPU type", text: env.cpuType }) : null,
    ];
    return card(
      [h("span", { class: "env-id", text: env.id }), h("span", { class: "tags" }, tags)],
      { "data-environment": env.id, class: "card env" },
      env.description ? h("p", { class: "env-description muted", text: env.description }) : null,
      env.unavailable
        ? h("p", { class: "unavailable", text: `Unavailable: ${env.unavailable}` })
        : null,
      meter("Slots", env.running, env.maxJobs, env.maxJobs === 1 ? "job" : "jobs", "slots"),
      h(
        "div",
        { class: "meters meters-2" },
        meter("CPU", env.inUse.cpu, pool.cpu, "cores", "cpu"),
        meter("RAM", env.inUse.ram, pool.ram, "GiB", "ram"),
        meter("Disk", env.inUse.disk, pool.disk, "GiB", "disk"),
        meter("GPUs", env.inUse.gpu, pool.gpu, "GPUs", "gpu"),
      ),
      h(
        "dl",
        { class: "facts" },
        pair(
          "Now",
          h("span", { class: "num", "data-count": "running", text: env.running }),
          " running · ",
          h("span", { class: "num", "data-count": "queued", text: env.queued }),
          " queued",
        ),
        pair("Per job", perJob(env.perJob)),
        pair("Max duration", limit(env.maxJobDuration)),
        pair("Queue max wait", limit(env.queueMaxWait)),
      ),
    );
  }

  function healthList(health) {
    return h(
      "ul",
      { class: "checks" },
      Object.entries(health.checks).map(([name, check]) =>
        h(
          "li",
          { class: check.ok ? "check ok" : "check bad", "data-check": name },
          h("span", { class: "check-mark", text: check.ok ? "✓" : "✗" }),
          h("span", { class: "check-name", text: name.replace(/_/g, " ") }),
          h("span", {
            class: "muted num",
            text: check.ms !== null ? `${num(check.ms, 1)} ms` : "",
          }),
          check.error ? h("span", { class: "check-error", text: check.error }) : null,
        ),
      ),
    );
  }

  function statusLink(row) {
    const query = new URLSearchParams({ status: row.status, environment: row.environment });
    const link = h(
      "a",
      { href: `#/jobs?${query}`, class: "plain" },
      // 70 counts the jobs that failed, stopped or timed out there too: no colour of success.
      row.status === 70 ? badge(70, "Ended", null, "ended") : badge(row.status, row.statusText),
    );
    if (row.status === 70) link.title = "Job completed: done, failed, stopped or timed out";
    return link;
  }

  function tile(n, label, key) {
    return h(
      "span",
      { class: "tile" },
      h("span", { class: "tile-num", "data-total": key, text: n }),
      h("span", { class: "tile-label", text: label }),
    );
  }

  function quotaFact(quota) {
    if (!quota) return "—";
    return [
      h("span", { text: quota.mechanism }),
      " ",
      h("span", {
        class: quota.hard ? "tag tag-ok" : "tag tag-warn",
        "data-quota": quota.hard ? "hard" : "soft",
        title: quota.hard ? "a job cannot write past its disk" : "a job's disk is only watched",
        text: quota.hard ? "hard" : "soft",
      }),
    ];
  }

  function renderOverview(o) {
    const running = o.environments.reduce((n, e) => n + e.running, 0);
    const queued = o.environments.reduce((n, e) => n + e.queued, 0);
    const slots = o.environments.reduce((n, e) => n + e.maxJobs, 0);
    const pool = card(
      [
        h("span", { text: "Pool" }),
        h(
          "span",
          { class: "tiles" },
          tile(running, `running of ${slots} slots`, "running"),
          tile(queued, "queued", "queued"),
        ),
      ],
      { class: "card pool", "data-card": "pool" },
      h(
        "div",
        { class: "meters meters-2" },
        meter("CPU", o.poolInUse.cpu, o.pool.cpu, "cores", "cpu"),
        meter("RAM", o.poolInUse.ram, o.pool.ram, "GiB", "ram"),
        meter("Disk", o.poolInUse.disk, o.pool.disk, "GiB", "disk"),
        meter("GPUs", o.poolInUse.gpu, o.pool.gpu, "GPUs", "gpu"),
      ),
    );
    const server = card(
      [
        h("span", { text: "Server" }),
        h("span", {
          class: o.health.ok ? "tag tag-ok" : "tag tag-bad",
          "data-health": o.health.ok ? "ok" : "failing",
          text: o.health.ok ? "healthy" : "a check fails",
        }),
      ],
      { class: "card server", "data-card": "server" },
      h(
        "div",
        { class: "server-grid" },
        h(
          "dl",
          { class: "facts" },
          pair("Version", o.version),
          pair("Runtime", o.runtime),
          pair("Disk quota", quotaFact(o.diskQuota)),
        ),
        healthList(o.health),
      ),
    );
    const queue = card(
      "Queue by consumer",
      { "data-card": "queue" },
      table(
        ["Consumer", "Waiting:num", "Running:num"],
        o.consumers.map((c) =>
          h(
            "tr",
            { "data-owner": c.owner },
            h(
              "td",
              {},
              h("a", {
                href: `#/jobs?${new URLSearchParams({ owner: c.owner })}`,
                class: "mono",
                title: c.owner,
                text: c.owner,
              }),
            ),
            h("td", { class: "num", text: c.waiting }),
            h("td", { class: "num", text: c.running }),
          ),
        ),
        "Nobody waits or runs.",
      ),
      h("h3", { class: "sub", text: "By environment" }),
      table(
        ["Environment", "Running:num", "Queued:num", "Slots:num"],
        o.environments.map((e) =>
          h(
            "tr",
            { "data-environment": e.id },
            h("td", { text: e.id }),
            h("td", { class: "num", text: e.running }),
            h("td", { class: "num", text: e.queued }),
            h("td", { class: "num", text: e.maxJobs }),
          ),
        ),
        "No environments.",
      ),
    );
    const statuses = card(
      "Jobs by status",
      { "data-card": "statuses" },
      table(
        ["Environment", "Status", "Jobs:num"],
        o.jobsByStatus.map((row) =>
          h(
            "tr",
            { "data-environment": row.environment, "data-status": row.status },
            h("td", { text: row.environment }),
            h("td", {}, statusLink(row)),
            h("td", { class: "num", text: row.count }),
          ),
        ),
        "No jobs yet.",
      ),
    );
    return [
      h("div", { class: "row row-top" }, pool, server),
      h("h2", { class: "section-title", text: "Environments" }),
      h(
        "div",
        { class: "envs" },
        o.environments.map((e) => environmentCard(e, o.pool)),
      ),
      h("div", { class: "row" }, queue, statuses),
    ];
  }

  function overviewView() {
    const root = h("div", { class: "page page-overview" });
    fill(byId("view"), root);
    const read = ordered(() => getJSON(`${API}overview`));
    const refresh = async () => {
      try {
        const o = await read();
        if (o === null) return;
        shown(o);
        byId("version").textContent = `localcompute ${o.version}`;
        fill(root, renderOverview(o));
      } catch (e) {
        if (!root.childElementCount) failure(root, "the overview", e);
      }
    };
    const later = coalesce(refresh, 100);
    refresh();
    return { name: "overview", refresh, onEvent: later };
  }

  // -- jobs ---------------------------------------------------------------------------

  function jobLink(id) {
    return h("a", { href: `#/jobs/${id}`, class: "mono", title: id, text: id.slice(0, 12) });
  }

  /** The row shows `job`; its status too unless the row shows a newer event's. */
  function jobCells(tr, job, keepStatus = false) {
    const cells = tr.children;
    fill(cells[0], jobLink(job.jobId));
    fill(cells[1], h("span", { class: "mono", title: job.owner, text: shortOwner(job.owner) }));
    cells[2].textContent = job.environment;
    if (!keepStatus) fill(cells[3], badge(job.status, job.statusText, job.terminationReason));
    if (job.phases) {
      const total = jobSeconds(job);
      fill(
        cells[4],
        timelineBar(job),
        h("span", { class: "timeline-total num", text: total === null ? "" : seconds(total) }),
      );
    }
    cells[5].textContent = job.exitCode === null || job.exitCode === undefined ? "" : job.exitCode;
    cells[6].textContent = reasonText(job);
    cells[6].title = reasonText(job);
    cells[7].textContent = clock(job.dateCreated);
    if (!keepStatus) tr.className = `job-row r-${statusClass(job.status, job.terminationReason)}`;
  }

  function jobRow(job) {
    const tr = h(
      "tr",
      { "data-job-id": job.jobId },
      h("td", { class: "c-id" }),
      h("td", { class: "c-owner" }),
      h("td", { class: "c-env" }),
      h("td", { class: "c-status" }),
      h("td", { class: "c-timeline" }),
      h("td", { class: "c-exit num" }),
      h("td", { class: "c-reason" }),
      h("td", { class: "c-created num" }),
    );
    jobCells(tr, job);
    return tr;
  }

  function filterForm(params, environments, apply) {
    const select = (name, options) => {
      const el = h(
        "select",
        { name, "data-filter": name },
        options.map(([value, text]) => h("option", { value, text })),
      );
      el.value = params.get(name) || "";
      el.addEventListener("change", apply);
      return el;
    };
    const text = (name, placeholder, size) => {
      const el = h("input", {
        type: "search",
        name,
        placeholder,
        size,
        spellcheck: "false",
        autocomplete: "off",
        "data-filter": name,
      });
      el.value = params.get(name) || "";
      el.addEventListener("input", debounce(apply, 250));
      el.addEventListener("change", apply);
      return el;
    };
    const envs = environments.map((e) => [e, e]);
    const current = params.get("environment");
    if (current && !environments.includes(current)) envs.push([current, current]);
    return h(
      "form",
      { class: "filters", onsubmit: (e) => e.preventDefault() },
      h(
        "label",
        {},
        "Status",
        select("status", [["", "any"], ...STATUSES.map(([n, t]) => [String(n), `${n} ${t}`])]),
      ),
      h("label", {}, "Environment", select("environment", [["", "any"], ...envs])),
      h("label", {}, "Owner", text("owner", "0x… address", 24)),
      h("label", {}, "Job id", text("q", "id or its first digits", 20)),
      h("button", {
        type: "button",
        class: "link",
        text: "clear",
        onclick: (e) => {
          for (const el of e.target.form.querySelectorAll("[data-filter]")) el.value = "";
          apply();
        },
      }),
    );
  }

  function formParams(form) {
    const params = new URLSearchParams();
    for (const el of form.querySelectorAll("[data-filter]")) {
      const value = el.value.trim();
      if (value) params.set(el.name, value);
    }
    return params;
  }

  function passes(event, params) {
    const status = params.get("status");
    const owner = params.get("owner");
    const env = params.get("environment");
    const q = params.get("q");
    if (status && Number(status) !== event.status) return false;
    if (owner && owner.toLowerCase() !== event.owner.toLowerCase()) return false;
    if (env && env !== event.environment) return false;
    return !q || event.jobId.startsWith(q.toLowerCase());
  }

  function jobsView(params) {
    const rows = new Map(); // job id → its <tr>, kept as the table changes
    const seen = new Map(); // job id → the last event id shown in its row
    const tbody = h("tbody", { id: "jobs-body" });
    const status = h("p", { class: "muted table-note" });
    const form = filterForm(params, [], () => {
      const wanted = formParams(form).toString();
      // The filters live in the hash: a link or a reload shows the same table.
      history.replaceState(null, "", `#/jobs${wanted ? `?${wanted}` : ""}`);
      params = formParams(form);
      fill(tbody);
      rows.clear();
      refresh();
    });
    const root = h(
      "div",
      { class: "page page-jobs" },
      h("div", { class: "page-head" }, h("h1", { text: "Jobs" }), form),
      card(
        null,
        { class: "card card-flush" },
        h(
          "table",
          { class: "grid jobs", id: "jobs-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              [
                "Job",
                "Owner",
                "Environment",
                "Status",
                "Timeline",
                "Exit:num",
                "Reason",
                "Created:num",
              ].map(heading),
            ),
          ),
          tbody,
        ),
        status,
      ),
    );
    fill(byId("view"), root);

    // The environments for the filter come with the overview.
    getJSON(`${API}overview`)
      .then((o) => {
        const select = form.querySelector("[name=environment]");
        const value = select.value;
        const have = new Set([...select.options].map((option) => option.value));
        for (const e of o.environments) {
          if (!have.has(e.id)) select.append(h("option", { value: e.id, text: e.id }));
        }
        select.value = value;
      })
      .catch(() => {});

    const read = ordered((query) => getJSON(`${API}jobs?${query}`));
    const refresh = async () => {
      const query = new URLSearchParams(params);
      query.set("limit", "200");
      const asked = params.toString();
      try {
        const data = await read(query);
        if (data === null || asked !== params.toString()) return; // a newer read, or filters
        shown(data);
        merge(data.jobs, data.lastEventId);
        status.textContent = data.jobs.length
          ? `${data.jobs.length} job${data.jobs.length === 1 ? "" : "s"}, newest first` +
            (data.jobs.length >= 200 ? " (the 200 newest)" : "")
          : "No jobs match.";
        status.classList.remove("error");
      } catch (e) {
        if (e instanceof HttpError && e.status === 400) {
          status.textContent = `The filter is not valid: ${e.message}`;
          status.classList.add("error");
          fill(tbody);
          rows.clear();
        } else if (!(e instanceof HttpError && e.status === 403)) {
          status.textContent = `Could not read the jobs: ${e.message || e}`;
        }
      }
    };

    /** The table becomes `jobs` (newest first); rows already there are updated in place. */
    function merge(jobs, lastEventId) {
      const keep = new Set(jobs.map((j) => j.jobId));
      for (const [id, tr] of rows) {
        // A row an event brought after this read began stays: the next read has it.
        if (!keep.has(id) && (seen.get(id) || 0) <= lastEventId) {
          tr.remove();
          rows.delete(id);
        }
      }
      let before = tbody.firstChild;
      for (const job of jobs) {
        let tr = rows.get(job.jobId);
        if (tr) {
          jobCells(tr, job, (seen.get(job.jobId) || 0) > lastEventId);
        } else {
          tr = jobRow(job);
          rows.set(job.jobId, tr);
        }
        seen.set(job.jobId, Math.max(seen.get(job.jobId) || 0, lastEventId));
        if (tr !== before) tbody.insertBefore(tr, before);
        before = tr.nextSibling;
      }
    }

    const later = coalesce(refresh, 150);
    const onEvent = (event) => {
      // The event shows at once; the row's timeline and detail follow with the re-read.
      let tr = rows.get(event.jobId);
      if (!tr && passes(event, params)) {
        tr = jobRow({ ...event, final: false, phases: null, dateCreated: event.at });
        rows.set(event.jobId, tr);
        tbody.prepend(tr);
      }
      if (tr && event.id > (seen.get(event.jobId) || 0)) {
        seen.set(event.jobId, event.id);
        const cells = tr.children;
        fill(cells[3], badge(event.status, event.statusText, event.terminationReason));
        if (event.exitCode !== null) cells[5].textContent = event.exitCode;
        tr.className = `job-row r-${statusClass(event.status, event.terminationReason)}`;
      }
      later();
    };

    // Phases still on grow: their bars are redrawn every two seconds.
    const ticking = setInterval(() => {
      if (tbody.querySelector(".r-running, .r-waiting")) later();
    }, 2000);

    refresh();
    return {
      name: "jobs",
      refresh,
      onEvent,
      destroy: () => clearInterval(ticking),
      sameAs: (next) => next.name === "jobs" && next.params.toString() === params.toString(),
    };
  }

  // -- one job ------------------------------------------------------------------------

  function phaseTable(job) {
    const parts = spans(job);
    if (!parts.length) return h("p", { class: "muted", text: "Not started yet." });
    return h(
      "table",
      { class: "grid phases", "data-phases": "" },
      h("thead", {}, h("tr", {}, ["Phase", "Started:num", "Took:num"].map(heading))),
      h(
        "tbody",
        {},
        parts.map((p) =>
          h(
            "tr",
            { "data-phase": p.name },
            h("td", {}, h("span", { class: `swatch ph-${p.name}` }), h("span", { text: p.name })),
            h("td", { class: "num", text: `+${seconds(p.start - job.dateCreated)}` }),
            h("td", {
              class: "num",
              "data-seconds": p.seconds.toFixed(3),
              text: p.on ? `${seconds(p.seconds)} so far` : seconds(p.seconds),
            }),
          ),
        ),
      ),
    );
  }

  function gib(n) {
    return n === null || n === undefined ? "—" : `${num(n, 2)} GiB`;
  }

  function requested(r) {
    const parts = [];
    if (r.cpu !== null) parts.push(count(r.cpu, "core"));
    if (r.ram_gb !== null) parts.push(`${num(r.ram_gb)} GiB RAM`);
    if (r.disk_gb !== null) parts.push(`${num(r.disk_gb)} GiB disk`);
    if (r.gpus !== null) parts.push(count(r.gpus, "GPU"));
    return parts.length ? parts.join(" · ") : "the environment's defaults";
  }

  function limitsFacts(job) {
    const a = job.allocation;
    return h(
      "dl",
      { class: "facts" },
      pair("Max duration", limit(job.limits.maxDuration)),
      pair("Queue max wait", limit(job.limits.queueMaxWait)),
      pair("Requested", requested(job.limits.requested)),
      a
        ? [
            pair(
              "Allocated",
              `${count(a.cpu, "core")} · ${gib(a.ram)} RAM · ${gib(a.disk)} disk · ` +
                (a.gpus.length ? count(a.gpus.length, "GPU") : "no GPU"),
            ),
            pair("CPU set", a.cpuset && a.cpuset.length ? a.cpuset.join(", ") : "any"),
            a.gpus.length ? pair("GPUs", a.gpus.join(", ")) : null,
            pair("Node", a.node),
          ]
        : pair("Allocated", h("span", { class: "muted", text: "nothing (yet)" })),
    );
  }

  function algorithmFacts(job) {
    const a = job.algorithm;
    return h(
      "dl",
      { class: "facts" },
      pair("Image", h("span", { class: "mono", text: a.image })),
      pair("Entrypoint", h("code", { text: a.entrypoint || "—" })),
      pair("Code", a.code),
      a.did ? pair("DID", h("span", { class: "mono wrap", text: a.did })) : null,
      a.ranImage ? pair("Ran", h("span", { class: "mono wrap", text: a.ranImage })) : null,
      pair(
        "Inputs",
        job.inputs.length
          ? h(
              "ul",
              { class: "plain-list" },
              job.inputs.map((d) => h("li", { class: "mono wrap", text: d })),
            )
          : "none",
      ),
    );
  }

  function summaryFacts(job) {
    return h(
      "dl",
      { class: "facts" },
      pair("Owner", h("span", { class: "mono wrap", text: job.owner })),
      pair("Environment", job.environment),
      pair("Created", clock(job.dateCreated)),
      pair("Finished", job.dateFinished ? clock(job.dateFinished) : "—"),
      pair("Took", seconds(jobSeconds(job))),
      pair("Exit code", job.exitCode === null ? "—" : String(job.exitCode)),
      pair("Reason", job.terminationReason || "—"),
      job.stopRequested ? pair("Stop", "requested") : null,
      job.removed || job.deleteRequested ? pair("Removed", "yes") : null,
    );
  }

  const RESULT_TYPES = {
    output: "output",
    algorithmLog: "algorithm log",
    configrationLog: "configuration log",
    filteringLog: "filter log",
    publishLog: "publish log",
    receipt: "receipt",
  };

  function resultsTable(job) {
    return table(
      ["File", "Type", "Size:num", "sha256", ""],
      job.results.map((r) =>
        h(
          "tr",
          { "data-result": r.index, "data-type": r.type },
          h("td", { class: "mono", text: r.filename }),
          h("td", { text: RESULT_TYPES[r.type] || r.type }),
          h("td", { class: "num", title: `${r.filesize} bytes`, text: bytes(r.filesize) }),
          h("td", { class: "mono hash", title: r.sha256, text: r.sha256 }),
          h(
            "td",
            {},
            h("a", {
              href: r.url,
              download: r.filename,
              class: "download",
              "data-download": r.index,
              text: "download",
            }),
          ),
        ),
      ),
      job.final ? "No results." : "Results come when the job ends.",
    );
  }

  function jobView(id) {
    let job = null;
    let seenEvent = 0;
    let streaming = null; // the live log's AbortController, while it streams
    let finalRead = false;
    let gone = false;
    const logText = document.createTextNode("");
    const logPre = h("pre", { class: "log", id: "log" }, logText);
    const logState = h("span", { class: "log-state muted", id: "log-state", text: "" });
    const head = h("div", { class: "page-head job-head" });
    const banner = h("div", { class: "banner", id: "failure", hidden: true });
    const timeline = card("Timeline", { "data-card": "timeline" });
    const summary = card("Job", { "data-card": "summary" });
    const limits = card("Limits and allocation", { "data-card": "limits" });
    const algorithm = card("Algorithm", { "data-card": "algorithm" });
    const results = card("Results", { "data-card": "results" });
    const configLog = card("Configuration log", { "data-card": "configuration", hidden: true });
    const receipt = card("Receipt", { "data-card": "receipt", hidden: true });
    const output = card(
      [h("span", { text: "Output" }), logState],
      { "data-card": "output" },
      logPre,
    );
    const root = h(
      "div",
      { class: "page page-job" },
      head,
      banner,
      h(
        "div",
        { class: "job-grid" },
        h("div", { class: "job-main" }, timeline, output, results, configLog, receipt),
        h("div", { class: "job-side" }, summary, limits, algorithm),
      ),
    );
    fill(byId("view"), root);

    function showHead(status, statusText, reason) {
      fill(
        head,
        h("a", { href: "#/jobs", class: "back", text: "← Jobs" }),
        h("h1", {}, "Job ", h("span", { class: "mono", text: id })),
        h("span", { id: "job-status" }, badge(status, statusText, reason)),
      );
    }

    function showBanner(j) {
      const failed = isFailed(j);
      banner.hidden = !failed;
      if (!failed) return;
      fill(
        banner,
        h("strong", { class: "banner-title", text: j.statusText }),
        j.detail ? h("span", { class: "banner-detail", text: j.detail }) : null,
        j.exitCode !== null && j.exitCode !== undefined
          ? h("span", { class: "banner-exit", text: `exit code ${j.exitCode}` })
          : null,
      );
    }

    function render(j) {
      showHead(j.status, j.statusText, j.terminationReason);
      showBanner(j);
      fill(
        timeline,
        h("h2", { class: "card-title", text: "Timeline" }),
        timelineBar(j, true),
        phaseTable(j),
      );
      fill(summary, h("h2", { class: "card-title", text: "Job" }), summaryFacts(j));
      fill(limits, h("h2", { class: "card-title", text: "Limits and allocation" }), limitsFacts(j));
      fill(algorithm, h("h2", { class: "card-title", text: "Algorithm" }), algorithmFacts(j));
      fill(results, h("h2", { class: "card-title", text: "Results" }), resultsTable(j));
    }

    const read = ordered(() => getJSON(`${API}jobs/${encodeURIComponent(id)}`));
    const refresh = async () => {
      let j;
      try {
        j = await read();
        if (j === null) return;
        shown(j);
      } catch (e) {
        if (!job) {
          if (e instanceof HttpError && e.status === 404) {
            fill(root, h("p", { class: "error", text: `There is no job ${id}.` }));
          } else failure(root, `job ${id}`, e);
        }
        return;
      }
      if (gone) return;
      if (j.lastEventId < seenEvent && job) {
        // Older than an event shown already: keep the event's status on the page.
        j = { ...j, status: job.status, statusText: job.statusText };
      }
      job = j;
      render(j);
      if (j.running && !streaming && !finalRead) streamLog(j.logUrl);
      if (j.final && !finalRead) readFinal(j);
      if (!j.final && !j.running) {
        logState.textContent = j.status < 40 ? "waits for the algorithm to start" : "";
      }
      if (j.status === 40 && !j.running && !streaming) {
        // Its status says it runs, its output is not open yet: look again shortly.
        setTimeout(() => !gone && !streaming && refresh(), 200);
      }
    };

    function appendLog(text) {
      const atBottom = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 32;
      logText.appendData(text);
      if (atBottom) logPre.scrollTop = logPre.scrollHeight;
    }

    async function streamLog(url) {
      const controller = new AbortController();
      streaming = controller;
      logState.textContent = "live";
      logState.className = "log-state live-dot";
      logText.data = "";
      try {
        const response = await get(url, { signal: controller.signal });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          appendLog(value);
        }
        if (!finalRead) logState.textContent = "the algorithm has ended";
        logState.className = "log-state muted";
      } catch (e) {
        if (e.name === "AbortError") return;
        // Not started yet (a 404 just before it starts), or the server went: the next
        // status event, or the reconnect's re-read, starts the stream again.
        logState.textContent = "";
        logState.className = "log-state muted";
        if (streaming === controller) streaming = null;
        if (e instanceof HttpError && e.status === 404 && job && !job.final) {
          setTimeout(() => !gone && !streaming && refresh(), 200);
        }
        return;
      }
      if (streaming === controller) streaming = null;
    }

    async function readText(url) {
      return (await get(url)).text();
    }

    async function readFinal(j) {
      finalRead = true;
      if (streaming) streaming.abort();
      streaming = null;
      const algorithmLog = j.results.find((r) => r.type === "algorithmLog");
      logState.className = "log-state muted";
      try {
        const text = algorithmLog ? await readText(j.logUrl) : null;
        if (gone) return;
        if (text === null) {
          logText.data = "";
          logPre.hidden = true;
          logState.textContent = "none: the algorithm never ran";
        } else {
          if (logText.data !== text) logText.data = text;
          logState.textContent = text ? `${bytes(algorithmLog.filesize)}, complete` : "empty";
          logPre.scrollTop = logPre.scrollHeight;
        }
      } catch (e) {
        logState.textContent = `could not read the log: ${e.message || e}`;
      }
      const config = j.results.find((r) => r.type === "configrationLog");
      if (config && isFailed(j) && config.filesize <= LOG_SHOWN) {
        try {
          const text = await readText(config.url);
          fill(
            configLog,
            h("h2", { class: "card-title", text: "Configuration log" }),
            h("pre", { class: "log log-config", id: "configuration-log", text: text || "(empty)" }),
          );
          configLog.hidden = false;
          timeline.after(configLog); // why it failed, before what it printed
        } catch (_) {
          configLog.hidden = true;
        }
      }
      const signed = j.results.find((r) => r.type === "receipt");
      if (signed && signed.filesize <= RECEIPT_SHOWN) {
        try {
          const text = await readText(signed.url);
          let pretty = text;
          try {
            pretty = JSON.stringify(JSON.parse(text), null, 2);
          } catch (_) {
            // not JSON: shown as it is
          }
          fill(
            receipt,
            h("h2", { class: "card-title", text: "Receipt" }),
            h(
              "details",
              {},
              h("summary", { text: `${signed.filename}, ${bytes(signed.filesize)}` }),
              h("pre", { class: "log log-receipt", id: "receipt", text: pretty }),
            ),
          );
          receipt.hidden = false;
        } catch (_) {
          receipt.hidden = true;
        }
      }
    }

    const later = coalesce(refresh, 50);
    const onEvent = (event) => {
      if (event.jobId !== id) return;
      if (event.id > seenEvent) {
        seenEvent = event.id;
        showHead(event.status, event.statusText, event.terminationReason);
        if (job) job = { ...job, status: event.status, statusText: event.statusText };
      }
      later();
    };

    const ticking = setInterval(() => {
      if (job && !job.final) render(job);
    }, 1000);

    showHead("…", "loading", null);
    refresh();
    return {
      name: "job",
      refresh,
      onEvent,
      destroy: () => {
        gone = true;
        clearInterval(ticking);
        if (streaming) streaming.abort();
      },
    };
  }

  // -- routes -------------------------------------------------------------------------

  function route() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean);
    if (parts[0] === "jobs" && parts[1]) return { name: "job", id: decodeURIComponent(parts[1]) };
    if (parts[0] === "jobs") return { name: "jobs", params: new URLSearchParams(query || "") };
    return { name: "overview" };
  }

  let view = null;

  function show() {
    const r = route();
    if (view && view.sameAs && view.sameAs(r)) return;
    if (view && view.destroy) view.destroy();
    for (const a of document.querySelectorAll(".nav a")) {
      const on = a.dataset.route === (r.name === "job" ? "jobs" : r.name);
      a.classList.toggle("on", on);
    }
    if (r.name === "job") view = jobView(r.id);
    else if (r.name === "jobs") view = jobsView(r.params);
    else view = overviewView();
    document.title = `localcompute · ${r.name === "job" ? `job ${r.id.slice(0, 12)}` : r.name}`;
  }

  window.addEventListener("hashchange", show);
  // A page the browser keeps for "back" (its back/forward cache) holds no connection: the
  // browser allows a site only a few at once, and the next page needs them.
  window.addEventListener("pagehide", () => {
    live.close();
    if (view && view.destroy) view.destroy();
    view = null;
  });
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    show();
    live.connect();
  });
  show();
  live.connect();
})();
