// The jobs list at /ui: polls GET /v1/jobs with the session cookie and draws one row per job, with its times,
// a search box and a state filter. Everything from the server goes into the page as text, never as HTML.
"use strict";

(() => {
  const { FINAL, api, el, when, clock, duration, number, last, waitingText, finishedAt, ranFor } = window.vfl;
  const POLL_MS = 1000;
  const MODELS_EVERY = 10; // polls between two reads of the model names (for the search box)
  const METRIC_KEYS = ["auc", "macro_auc", "ks", "f1", "rmse", "r2"];
  const role = document.body.dataset.role;
  const can = {
    cancel: document.body.dataset.cancel === "1",
    report: document.body.dataset.report === "1",
    model: document.body.dataset.model === "1",
  };
  // Party B knows the losses and the metrics; the arbiter the losses; a feature party neither: its page shows
  // what it has (the aligned rows, the IDs it scored) instead of empty columns.
  const COLUMNS = ["job", "state", "stage", "progress",
    ...(role === "B" || role === "C" ? ["loss"] : []),
    ...(role === "B" ? ["metrics"] : ["rows"]),
    "created", "finished", "duration", "actions"];
  const TITLES = { job: "Job", state: "State", stage: "Stage", progress: "Progress", loss: "Loss", metrics: "Metrics",
    rows: "Rows", created: "Created", finished: "Finished", duration: "Duration", actions: "" };
  const tbody = document.getElementById("jobs-body");
  const refreshed = document.getElementById("refreshed");
  const noJobs = document.getElementById("no-jobs");
  const search = document.getElementById("job-search");
  const stateFilter = document.getElementById("state-filter");
  const shown = document.getElementById("jobs-shown");
  const rows = new Map();
  let namesByJob = new Map();
  let polls = 0;

  const head = document.querySelector("#jobs thead tr");
  head.replaceChildren(...COLUMNS.map((c) => el("th", { class: c }, TITLES[c])));

  const jobPath = (id, rest = "") => `/v1/jobs/${encodeURIComponent(id)}${rest}`;

  // The list shows the validation metrics (the training ones when there is no validation split); all in the title.
  function metricsText(metrics, all = false) {
    if (!metrics) return "";
    const parts = [];
    const splits = all || !metrics.validation ? ["validation", "train"] : ["validation"];
    for (const split of splits) {
      const values = metrics[split];
      if (!values) continue;
      const shownKeys = METRIC_KEYS.filter((k) => typeof values[k] === "number").map((k) => `${k} ${number(values[k])}`);
      if (shownKeys.length) parts.push(`${split}: ${shownKeys.join(", ")}`);
    }
    return parts.join(" · ");
  }

  function newRow(id) {
    const tr = el("tr", { "data-job-id": id });
    const cells = {};
    for (const name of COLUMNS) {
      cells[name] = el("td", { class: name });
      tr.append(cells[name]);
    }
    const page = el("a", { href: `/ui/jobs/${encodeURIComponent(id)}`, class: "job-page" });
    page.append(el("code", {}, id));
    const dataset = el("div", { class: "muted dataset" });
    cells.job.append(page, dataset);
    const stateText = el("span", { class: "state-name" });
    const error = el("div", { class: "error" });
    const waiting = el("div", { class: "waiting", role: "status" });
    cells.state.append(stateText, error, waiting);
    const bar = el("progress", { max: "1" });
    const epochText = el("span", { class: "epoch" });
    const activity = el("div", { class: "activity muted" });
    cells.progress.append(bar, epochText, activity);

    const links = el("span", { class: "links" });
    links.append(el("a", { href: jobPath(id), class: "record" }, "record"));
    const report = el("a", { href: jobPath(id, "/report"), class: "report" }, "report");
    const model = el("a", { href: jobPath(id, "/model"), class: "model" }, "model");
    cells.actions.append(links);
    let cancel = null;
    if (can.cancel) {
      cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
      cancel.addEventListener("click", () => cancelJob(id, cancel));
      cells.actions.append(cancel);
    }
    return { tr, cells, dataset, stateText, error, waiting, bar, epochText, activity, links, report, model, cancel };
  }

  // Two clicks: the first arms the button for a few seconds, the second cancels at every party.
  async function cancelJob(id, button) {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Confirm cancel";
      setTimeout(() => {
        button.classList.remove("armed");
        button.textContent = "Cancel";
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api("POST", jobPath(id, "/cancel"));
      refresh(false);
    } catch (error) {
      button.disabled = false;
      rows.get(id).error.textContent = `cancel: ${error.message}`;
    }
  }

  function update(row, job) {
    const { tr, cells, stateText, error, waiting, bar, epochText, activity } = row;
    tr.dataset.state = job.state;
    tr.dataset.epoch = String(job.epoch);
    tr.className = `state-${job.state}`;
    stateText.textContent = job.state;
    error.textContent = job.error || "";
    // Short in the list ("party-a unreachable since 19:05:37, fails at 19:07:37"); the whole sentence on hover.
    const waits = job.waiting_for || [];
    waiting.textContent = waits.map((w) => `${w.peer} ${w.state || "unreachable"} since ${clock(w.since)}; ` +
      `the job fails at ${clock(w.fails_at)}`).join("; ");
    waiting.title = waits.map(waitingText).join("; ");
    row.dataset.textContent = job.dataset ? `dataset ${job.dataset}` : "";
    cells.stage.textContent = job.stage;
    const progress = job.progress || {};
    const psi = progress.psi || [];
    if (job.state === "aligning" && psi.length) {
      // The PSI's buckets, over every feature party's PSI; its words say which bucket and chunk.
      bar.max = Math.max(1, psi.reduce((n, p) => n + p.buckets, 0));
      bar.value = psi.reduce((n, p) => n + p.buckets_done, 0);
      epochText.textContent = progress.text || "aligning";
    } else if (job.max_epochs > 0) {
      bar.max = job.max_epochs;
      // A succeeded job is done, whatever epoch it stopped at (early stopping, convergence).
      bar.value = job.state === "succeeded" ? job.max_epochs : Math.min(job.epoch, job.max_epochs);
      epochText.textContent = job.state === "succeeded" && job.epoch < job.max_epochs && progress.text
        ? progress.text : `epoch ${job.epoch}/${job.max_epochs}`;
    } else if (job.state === "succeeded") {
      bar.value = 1;
      epochText.textContent = progress.text || "done";
    } else {
      bar.removeAttribute("value"); // indeterminate until training starts
      epochText.textContent = job.state === "aligning" ? "aligning" : "";
    }
    activity.textContent = FINAL.has(job.state) ? "" : job.activity || "";
    if (cells.loss) {
      const loss = number(last(job.loss_history), 4);
      const validation = number(last(job.validation_loss_history), 4);
      cells.loss.textContent = loss ? (validation ? `${loss} (val ${validation})` : loss) : "";
    }
    if (cells.metrics) {
      cells.metrics.textContent = metricsText(job.metrics);
      cells.metrics.title = metricsText(job.metrics, true);
    }
    if (cells.rows) {
      const aligned = (job.alignment || {}).intersection;
      cells.rows.textContent = typeof aligned === "number" ? `${aligned} aligned` : "";
      if (job.scored_ids) cells.rows.textContent += ` · ${job.scored_ids} scored`;
    }
    // To the minute in the list (to the second on hover); a job that finished the day it started shows the time.
    const created = when(job.created_at);
    const finished = when(finishedAt(job));
    cells.created.textContent = created.slice(0, 16);
    cells.created.title = created;
    cells.finished.textContent = finished.slice(0, 10) === created.slice(0, 10) ? finished.slice(11, 16) : finished.slice(0, 16);
    cells.finished.title = finished;
    cells.duration.textContent = duration(ranFor(job));
    const done = job.state === "succeeded";
    if (can.report && done && !row.report.isConnected) row.links.append(" ", row.report);
    if (can.model && done && !row.model.isConnected) row.links.append(" ", row.model);
    if (row.cancel) row.cancel.hidden = FINAL.has(job.state);
    row.haystack = [job.job_id, job.dataset, job.state, job.stage, ...Object.values(job.peers || {}),
      ...(namesByJob.get(job.job_id) || [])].filter(Boolean).join(" ").toLowerCase();
  }

  function matches(row) {
    const words = (search ? search.value : "").toLowerCase().split(/\s+/).filter(Boolean);
    const state = stateFilter ? stateFilter.value : "";
    const stateOk = !state || (state === "running" ? !FINAL.has(row.tr.dataset.state) : row.tr.dataset.state === state);
    return stateOk && words.every((w) => row.haystack.includes(w));
  }

  function applyFilter() {
    let visible = 0;
    for (const row of rows.values()) {
      row.tr.hidden = !matches(row);
      if (!row.tr.hidden) visible += 1;
    }
    if (shown) shown.textContent = rows.size ? `${visible} of ${rows.size} shown` : "";
  }

  function render(jobs) {
    jobs.sort((a, b) => b.created_at - a.created_at);
    const seen = new Set();
    jobs.forEach((job, index) => {
      let row = rows.get(job.job_id);
      if (!row) {
        row = newRow(job.job_id);
        rows.set(job.job_id, row);
      }
      update(row, job);
      seen.add(job.job_id);
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    noJobs.hidden = jobs.length > 0;
    applyFilter();
  }

  // Model names (party B's promoted names) make jobs findable by name too.
  async function readNames() {
    if (role === "C") return;
    try {
      const data = await api("GET", "/v1/models");
      const names = new Map((data.models || []).map((m) => [m.job_id, [...(m.names || [])]]));
      for (const [name, entry] of Object.entries(data.served || {})) {
        for (const id of [entry.job_id, ...(entry.history || [])]) {
          names.set(id, [...(names.get(id) || []), name]);
        }
      }
      namesByJob = names;
    } catch (error) {
      // names are a convenience for searching; the jobs list stands without them
    }
  }

  let timer = null;
  async function refresh(again = true) {
    try {
      if (polls++ % MODELS_EVERY === 0) await readNames();
      const data = await api("GET", "/v1/jobs");
      render(data.jobs);
      refreshed.textContent = `updated ${new Date().toLocaleTimeString()}`;
      refreshed.classList.remove("error");
    } catch (error) {
      refreshed.textContent = `not updated: ${error.message}`;
      refreshed.classList.add("error");
    }
    if (again) timer = setTimeout(refresh, POLL_MS);
  }

  if (search) search.addEventListener("input", applyFilter);
  if (stateFilter) stateFilter.addEventListener("change", applyFilter);

  const submitForm = document.getElementById("submit-form");
  if (submitForm) {
    const result = document.getElementById("submit-result");
    const say = (text, kind) => {
      result.textContent = text;
      result.className = kind ? `alert ${kind}` : "";
      result.setAttribute("role", kind === "error" ? "alert" : "status");
    };
    submitForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let spec;
      try {
        spec = JSON.parse(document.getElementById("spec").value);
      } catch (error) {
        say(`not JSON: ${error.message}`, "error");
        return;
      }
      say("submitting…", "");
      try {
        const job = await api("POST", "/v1/jobs", spec);
        say(`submitted ${job.job_id}`, "ok");
        clearTimeout(timer);
        refresh();
      } catch (error) {
        say(`refused: ${error.message}`, "error");
      }
    });
  }

  // The page's handlers are in place: a test (or a user's script) may now use the form.
  document.body.dataset.ready = "1";
  refresh();
})();
