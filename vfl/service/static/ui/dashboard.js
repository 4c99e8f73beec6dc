// The vfl dashboard: polls GET /v1/jobs with the session cookie and draws one row per job.
// Served by the package itself (no external assets); everything from the server goes into the
// page as text (textContent), never as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const FINAL = new Set(["succeeded", "failed", "cancelled", "damaged"]);
  const METRIC_KEYS = ["auc", "macro_auc", "ks", "accuracy", "f1", "rmse", "mae", "r2"];
  const can = {
    cancel: document.body.dataset.cancel === "1",
    report: document.body.dataset.report === "1",
    model: document.body.dataset.model === "1",
  };
  const tbody = document.getElementById("jobs-body");
  const refreshed = document.getElementById("refreshed");
  const noJobs = document.getElementById("no-jobs");
  const rows = new Map();

  // Every call says it comes from this page (the server requires it with the cookie for changes).
  async function api(method, path, payload) {
    const init = { method, credentials: "same-origin", headers: { "X-VFL-UI": "1" } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("session expired");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(typeof data.detail === "string" ? data.detail : `${response.status} ${response.statusText}`);
    }
    return data;
  }

  function el(tag, attributes = {}, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const jobPath = (id, rest = "") => `/v1/jobs/${encodeURIComponent(id)}${rest}`;
  const number = (x, digits = 4) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "");
  const last = (list) => (Array.isArray(list) && list.length ? list[list.length - 1] : undefined);

  function metricsText(metrics) {
    if (!metrics) return "";
    const parts = [];
    for (const split of ["validation", "train"]) {
      const values = metrics[split];
      if (!values) continue;
      const shown = METRIC_KEYS.filter((k) => typeof values[k] === "number").map((k) => `${k} ${number(values[k])}`);
      if (shown.length) parts.push(`${split}: ${shown.join(", ")}`);
    }
    return parts.join(" · ");
  }

  function newRow(id) {
    const tr = el("tr", { "data-job-id": id });
    const cells = {};
    for (const name of ["job", "state", "stage", "progress", "loss", "metrics", "actions"]) {
      cells[name] = el("td", { class: name });
      tr.append(cells[name]);
    }
    const page = el("a", { href: `/ui/jobs/${encodeURIComponent(id)}`, class: "job-page" });
    page.append(el("code", {}, id));
    cells.job.append(page);
    const stateText = el("span", { class: "state-name" });
    const error = el("div", { class: "error" });
    cells.state.append(stateText, error);
    const bar = el("progress", { max: "1" });
    const epochText = el("span", { class: "epoch" });
    cells.progress.append(bar, epochText);

    const links = el("span", { class: "links" });
    const record = el("a", { href: jobPath(id), class: "record" }, "record");
    links.append(record);
    const report = el("a", { href: jobPath(id, "/report"), class: "report" }, "report");
    const model = el("a", { href: jobPath(id, "/model"), class: "model" }, "model");
    cells.actions.append(links);
    let cancel = null;
    if (can.cancel) {
      cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
      cancel.addEventListener("click", () => cancelJob(id, cancel));
      cells.actions.append(cancel);
    }
    return { tr, cells, stateText, error, bar, epochText, links, report, model, cancel };
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
    const { tr, stateText, error, bar, epochText } = row;
    tr.dataset.state = job.state;
    tr.dataset.epoch = String(job.epoch);
    tr.className = `state-${job.state}`;
    stateText.textContent = job.state;
    error.textContent = job.error || "";
    row.cells.stage.textContent = job.stage;
    if (job.max_epochs > 0) {
      bar.max = job.max_epochs;
      bar.value = Math.min(job.epoch, job.max_epochs);
      epochText.textContent = `epoch ${job.epoch}/${job.max_epochs}`;
    } else {
      bar.removeAttribute("value"); // indeterminate until training starts
      epochText.textContent = job.state === "aligning" ? "aligning" : "";
    }
    const loss = number(last(job.loss_history), 6);
    const validation = number(last(job.validation_loss_history), 6);
    row.cells.loss.textContent = loss ? (validation ? `${loss} (val ${validation})` : loss) : "";
    row.cells.metrics.textContent = metricsText(job.metrics);
    const done = job.state === "succeeded";
    if (can.report && done && !row.report.isConnected) row.links.append(" ", row.report);
    if (can.model && done && !row.model.isConnected) row.links.append(" ", row.model);
    if (row.cancel) row.cancel.hidden = FINAL.has(job.state);
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
  }

  let timer = null;
  async function refresh(again = true) {
    try {
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

  const submitForm = document.getElementById("submit-form");
  if (submitForm) {
    const result = document.getElementById("submit-result");
    submitForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      let spec;
      try {
        spec = JSON.parse(document.getElementById("spec").value);
      } catch (error) {
        result.textContent = `not JSON: ${error.message}`;
        return;
      }
      result.textContent = "submitting…";
      try {
        const job = await api("POST", "/v1/jobs", spec);
        result.textContent = `submitted ${job.job_id}`;
        clearTimeout(timer);
        refresh();
      } catch (error) {
        result.textContent = `refused: ${error.message}`;
      }
    });
  }

  refresh();
})();
