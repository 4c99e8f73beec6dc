// The model registry at /ui/models: every model version at this party (GET /v1/models) and, at party B, the names
// that serve them with their history (which version is promoted). Values go into the page as text only.
"use strict";

(() => {
  const { api, el, number, table } = window.vfl;
  const POLL_MS = 5000;
  const tbody = document.getElementById("models-body");

  function served(data) {
    const section = document.getElementById("served-section");
    if (!("served" in data)) {
      section.replaceChildren();
      return;
    }
    const entries = Object.entries(data.served || {});
    const heading = el("h3", {}, "Names");
    if (!entries.length) {
      section.replaceChildren(heading, el("p", { class: "note" },
        'No name serves a version yet: promote one with POST /v1/models/NAME/promote {"job_id": "..."}.'));
      return;
    }
    const rows = entries.map(([name, entry]) => {
      const link = el("a", { href: `/ui/jobs/${encodeURIComponent(entry.job_id)}` });
      link.append(el("code", {}, entry.job_id));
      const before = el("span", { class: "muted" }, (entry.history || []).slice().reverse().join(", ") || "none");
      return [el("strong", {}, name), link, before];
    });
    section.replaceChildren(heading, table(["name", "serves (promoted)", "served before (newest first)"], rows,
      { id: "served" }));
  }

  function versions(data) {
    const promoted = new Map(Object.entries(data.served || {}).map(([name, e]) => [e.job_id, name]));
    const list = (data.models || []).slice().reverse(); // newest first
    tbody.replaceChildren(...list.map((m) => {
      const tr = el("tr", { "data-job-id": m.job_id });
      const link = el("a", { href: `/ui/jobs/${encodeURIComponent(m.job_id)}` });
      link.append(el("code", {}, m.job_id));
      const validation = ((m.metrics || {}).validation) || {};
      const quality = ["auc", "macro_auc", "ks", "rmse", "r2"].filter((k) => typeof validation[k] === "number")
        .map((k) => `${k} ${number(validation[k])}`).join(", ");
      const names = el("span", { class: "names" });
      for (const n of m.names || []) {
        names.append(el("span", { class: promoted.get(m.job_id) === n ? "badge promoted" : "badge" }, n), " ");
      }
      if (promoted.has(m.job_id)) tr.classList.add("promoted");
      const cells = [link, m.model || "", m.dataset || "", String((m.feature_names || []).length || ""),
        m.trained_at || "", m.error ? el("span", { class: "error" }, m.error) : quality, names];
      for (const cell of cells) {
        const td = el("td");
        if (cell instanceof Node) td.append(cell); else td.textContent = cell;
        tr.append(td);
      }
      return tr;
    }));
    document.getElementById("no-models").hidden = list.length > 0;
  }

  async function refresh() {
    const refreshed = document.getElementById("refreshed");
    try {
      const data = await api("GET", "/v1/models");
      served(data);
      versions(data);
      refreshed.textContent = `updated ${new Date().toLocaleTimeString()}`;
      refreshed.classList.remove("error");
      document.body.dataset.drawn = "1";
    } catch (error) {
      refreshed.textContent = `not updated: ${error.message}`;
      refreshed.classList.add("error");
    }
    setTimeout(refresh, POLL_MS);
  }

  refresh();
})();
