// One job's page (/ui/jobs/{id}): its progress, stage timeline, loss and convergence curves, ROC, timings,
// model versions, ledger entry, event log and (party B) its report, all from this service's REST API with the
// session cookie, polled while the job runs. Values from the server go into the page as text, never as HTML.
"use strict";

(() => {
  const { FINAL, api, el, when, clock, duration, number, waitingText, ranFor, lineChart, table } = window.vfl;
  const POLL_MS = 1500;
  const body = document.body.dataset;
  const jobId = document.getElementById("job").dataset.jobId;
  const role = body.role;
  const $ = (id) => document.getElementById(id);
  const jobPath = (rest = "") => `/v1/jobs/${encodeURIComponent(jobId)}${rest}`;
  let lastDrawn = "";
  let reportShown = false;

  function put(id, ...nodes) {
    const target = $(id);
    if (target) target.replaceChildren(...nodes);
  }

  const note = (text) => el("p", { class: "note" }, text);

  // -- the summary: state, progress, who we wait for -----------------------------------------------------
  function summary(job) {
    const progress = job.progress || {};
    const box = el("div", { class: `summary state-${job.state}` });
    const line = el("p", { class: "lead" });
    line.append(el("span", { class: "state-name" }, job.state), ` (${job.stage})`);
    const bar = el("progress", { max: "1", id: "job-progress" });
    if (job.state === "succeeded" || job.max_epochs > 0 || FINAL.has(job.state)) bar.value = progress.fraction || 0;
    const text = el("span", { class: "epoch", id: "progress-text" }, progress.text || "");
    box.append(line, bar, text);
    // While the job aligns: each PSI's buckets done, and the chunks handled in the running bucket.
    for (const p of progress.psi || []) {
      const psi = el("p", { class: "psi-progress", "data-peer": p.peer });
      const buckets = el("progress", { max: String(Math.max(1, p.buckets)) });
      buckets.value = p.buckets_done;
      const words = p.buckets ? `PSI with ${p.peer}: ${p.buckets_done} of ${p.buckets} buckets done` +
        (p.buckets_done < p.buckets && p.chunks ? `; bucket ${p.buckets_done + 1}: ${p.chunks_done} of ${p.chunks} chunks` : "") +
        (p.ids ? ` (${p.ids_done} of ${p.ids} own IDs in finished buckets)` : "")
        : `PSI with ${p.peer}: waiting for its key`;
      psi.append(buckets, words);
      box.append(psi);
    }
    for (const w of job.waiting_for || []) box.append(el("p", { class: "alert warn", role: "status" }, waitingText(w)));
    if (job.error) box.append(el("p", { class: "alert error", role: "alert" }, job.error));
    const aligned = (job.alignment || {}).intersection;
    const times = [`created ${when(job.created_at)}`];
    if (typeof aligned === "number") times.unshift(`${aligned} aligned rows`);
    if (FINAL.has(job.state)) times.push(`finished ${when(job.stopped_at || job.updated_at)}`);
    times.push(`${FINAL.has(job.state) ? "ran" : "running for"} ${duration(ranFor(job))}`);
    box.append(el("p", { class: "muted" }, times.join(" · ")));
    put("summary", box);
    // The server drew the same facts once, for a page without script; from here on the summary is the live one.
    const facts = document.querySelector("#job table.facts");
    if (facts) facts.hidden = true;
  }

  // -- the stage timeline: each move of the job's lifecycle here, as a bar and a table ---------------------
  function timeline(job) {
    const moves = [{ at: job.created_at, stage: "registered", state: "pending" }, ...(job.timeline || [])];
    const end = FINAL.has(job.state) ? job.stopped_at || job.updated_at : Date.now() / 1000;
    const spans = moves.map((m, i) => ({ ...m, until: i + 1 < moves.length ? moves[i + 1].at : end }));
    if (!(job.timeline || []).length) {
      put("timeline", note("This record was written before stage times were kept; the event log below tells the story."));
      return;
    }
    const total = Math.max(1e-6, end - moves[0].at);
    const strip = el("div", { class: "segments", id: "stage-strip" });
    for (const s of spans) {
      const last = s === spans[spans.length - 1];
      const part = el("div", { class: `seg seg-${s.stage}${last && !FINAL.has(job.state) ? " current" : ""}`, "data-stage": s.stage,
        title: `${s.stage}: ${duration(s.until - s.at)} from ${clock(s.at)}` });
      // Proportional width, but never too thin to see (a stage of a few milliseconds still shows).
      part.style.flexGrow = String(Math.max(0.02, (s.until - s.at) / total));
      part.append(el("span", {}, s.stage));
      strip.append(part);
    }
    const rows = spans.map((s) => [s.stage, s.state, when(s.at), FINAL.has(s.state) && s === spans[spans.length - 1]
      ? "" : duration(s.until - s.at)]);
    put("timeline", strip, table(["stage", "state", "from", "for"], rows, { id: "timeline-table", class: "compact" }));
  }

  // -- curves: losses per epoch (B, the arbiter), this party's weights per epoch, the ROC (B) ---------------
  function curves(job) {
    const charts = [];
    const train = job.loss_history || [];
    const validation = job.validation_loss_history || [];
    if (train.length) {
      const series = [{ name: "training loss", values: train, cls: "train" }];
      if (validation.length) series.push({ name: "validation loss", values: validation, cls: "validation" });
      charts.push(figure(lineChart({ series, xLabel: "epoch", yLabel: "loss", id: "loss-chart" }),
        job.stop_reason ? `Stopped: ${job.stop_reason.replace("_", " ")} after ${job.epoch} epochs.` : ""));
    }
    const norms = ownNorms(job);
    if (norms.length) {
      charts.push(figure(lineChart({ series: [{ name: "‖θ‖ (this party)", values: norms, cls: "norm" }],
        xLabel: "epoch", yLabel: "weight norm", id: "norm-chart" }),
        "This party's own weights per epoch (they never leave it)."));
    }
    const weights = ownWeights(job);
    if (weights) charts.push(weights);
    const partners = Object.entries(job.feature_convergence || {});
    if (partners.length) {
      const series = partners.map(([who, c], k) => ({ name: `‖θ‖ ${who}`, values: c.weight_norm || [], cls: `partner-${k}` }));
      charts.push(figure(lineChart({ series, xLabel: "epoch", yLabel: "partner weight norm", id: "partner-chart" }),
        "Each feature party shares only the norm of its weights per epoch, not the weights."));
    }
    const roc = job.curves;
    if (roc && roc.kind === "roc" && Array.isArray(roc.fpr)) {
      const auc = ((job.metrics || {})[job.curve_split || "validation"] || {}).auc;
      charts.push(figure(lineChart({ series: [{ name: `ROC${auc ? `, AUC ${number(auc, 3)}` : ""}`,
        points: roc.fpr.map((x, i) => [x, roc.tpr[i]]), cls: "roc" }], xy: true, diagonal: true,
        xLabel: "false positive rate", yLabel: "true positive rate", id: "roc-chart" }),
        `On the ${job.curve_split || "validation"} rows.`));
    }
    if (roc && roc.kind === "roc_per_class" && Array.isArray(roc.classes)) {
      // A one-vs-rest model: each class against the rest, on the jointly normalised class probabilities.
      const perClass = ((job.metrics || {})[job.curve_split || "validation"] || {}).per_class || {};
      const series = roc.classes.map((c, k) => {
        const auc = (perClass[c.class] || {}).auc;
        return { name: `class ${c.class}${auc ? `, AUC ${number(auc, 3)}` : ""}`,
          points: c.fpr.map((x, i) => [x, c.tpr[i]]), cls: `class-${k % 6}` };
      });
      charts.push(figure(lineChart({ series, xy: true, diagonal: true, xLabel: "false positive rate",
        yLabel: "true positive rate", id: "roc-chart" }),
        `Each class against the rest, on the ${job.curve_split || "validation"} rows.`));
    }
    if (!charts.length) {
      const why = role === "A"
        ? "The losses and metrics are party B's (it holds the labels); this party sees its own weights once training runs."
        : "Nothing to draw yet: curves appear after the first epoch.";
      put("curves", note(why));
      return;
    }
    put("curves", ...charts);
  }

  function ownNorms(job) {
    const history = ((job.parameters || {}).history) || [];
    // A multi-class model keeps one weight vector per class: the norm is over all of them.
    return history.filter(Array.isArray).map((w) => Math.sqrt(w.flat(Infinity)
      .reduce((s, x) => s + (Number.isFinite(x) ? x * x : 0), 0)));
  }

  function figure(chart, caption) {
    const f = el("figure");
    f.append(chart);
    if (caption) f.append(el("figcaption", {}, caption));
    return f;
  }

  // This party's own coefficients at the end (its weights never leave it; B's page shows B's, A's page A's).
  function ownWeights(job) {
    const p = job.parameters || {};
    const final = (p.history || [])[(p.history || []).length - 1];
    if (!Array.isArray(p.names) || !Array.isArray(final) || !final.every(Number.isFinite)) return null;
    const rows = p.names.map((name, i) => [name, number(final[i])]);
    const t = table(["feature (standardised)", "weight"], rows, { id: "weights-table", class: "compact" });
    const f = el("figure", { class: "weights" });
    f.append(t, el("figcaption", {}, "This party's own weights after the last epoch kept."));
    return f;
  }

  // -- metrics against party B alone ----------------------------------------------------------------------
  function metrics(job) {
    const m = job.metrics || {};
    const base = ((job.baseline || {}).metrics) || {};
    const split = m.validation ? "validation" : "train";
    const keys = ["auc", "macro_auc", "ks", "accuracy", "precision", "recall", "f1", "log_loss", "rmse", "mae", "r2"]
      .filter((k) => typeof (m[split] || {})[k] === "number");
    if (role !== "B") {
      // Metrics need the labels: only party B computes them, and it sends them to no one. No empty panel here.
      $("metrics-section").hidden = true;
      return;
    }
    if (!keys.length) {
      put("metrics-live", note("Metrics appear once the job is evaluated."));
      return;
    }
    const rows = keys.map((k) => {
      const ours = m[split][k];
      const theirs = (base[split] || {})[k];
      const diff = typeof theirs === "number" ? ours - theirs : undefined;
      const cell = el("span", { class: diff === undefined ? "" : (diff >= 0) === !["log_loss", "rmse", "mae"].includes(k) ? "good" : "bad" },
        diff === undefined ? "" : `${diff >= 0 ? "+" : ""}${diff.toFixed(4)}`);
      return [k, number(ours), number(theirs), cell];
    });
    put("metrics-live", table(["metric", "federated", "party B alone", "difference"], rows, { id: "metrics-table", class: "compact" }),
      note(`On ${(m[split] || {}).rows || "the"} ${split} rows.`));
  }

  // -- timings --------------------------------------------------------------------------------------------
  function timings(job) {
    const names = { training_compute: "training: computing" };
    const rows = Object.entries(job.timings || {}).map(([k, v]) => [names[k] || k, duration(v)]);
    const align = job.alignment || {};
    if (typeof align.seconds === "number" && !(job.timings || {}).alignment) rows.push(["alignment (PSI)", duration(align.seconds)]);
    const epochs = (job.events || []).filter((e) => /^epoch \d+\//.test(e.message)).map((e) => e.at);
    if (epochs.length >= 2) {
      const gaps = epochs.slice(1).map((t, i) => t - epochs[i]);
      rows.push(["epoch (mean of " + gaps.length + ")", duration(gaps.reduce((a, b) => a + b, 0) / gaps.length)]);
      rows.push(["slowest epoch", duration(Math.max(...gaps))]);
    }
    if (typeof align.intersection === "number") rows.push(["aligned rows", String(align.intersection)]);
    if (typeof align.bytes === "number") rows.push(["PSI traffic", `${(align.bytes / 1024).toFixed(0)} KiB`]);
    const own = rows.length ? table(["", "this party"], rows, { id: "timings-table", class: "compact" })
      : note("No timings yet.");
    put("timings", own, ...partyTimings(job));
  }

  // Each party's seconds per stage, and training's compute against waiting (party B lists every party).
  const STAGE_ORDER = ["registered", "psi", "aligned", "binning", "training", "interrupted", "resuming", "evaluating",
    "contributions", "ledger"];
  function partyTimings(job) {
    const parties = job.party_timings || [];
    if (!parties.length) return [];
    const seen = new Set(parties.flatMap((p) => Object.keys(p.stages || {})));
    const stages = [...STAGE_ORDER.filter((s) => seen.has(s)), ...[...seen].filter((s) => !STAGE_ORDER.includes(s))];
    const rows = parties.map((p) => {
      const who = `${p.party} (${p.role})`;
      if (!p.available) {
        return [who, el("span", { class: "muted not-available" }, p.reason || "not available"),
          ...stages.map(() => ""), "", ""];
      }
      const t = p.training || {};
      return [who, p.state || "", ...stages.map((s) => (typeof (p.stages || {})[s] === "number" ? duration(p.stages[s]) : "")),
        typeof t.compute === "number" ? duration(t.compute) : "", typeof t.waiting === "number" ? duration(t.waiting) : ""];
    });
    return [el("h3", {}, "By party"),
      table(["party", "state", ...stages, "training: computing", "training: waiting"], rows,
        { id: "party-timings-table", class: "compact" }),
      note("Seconds per stage as each party measured them, rounded to 0.1 s; training's computing is the time " +
        "its roles spent handling messages, the rest it waited for the others.")];
  }

  // -- the event log -------------------------------------------------------------------------------------
  function events(job) {
    const list = job.events || [];
    if (!list.length) {
      put("events", note("No event kept for this job (records written before the event log was kept have none)."));
      return;
    }
    const rows = list.slice().reverse().map((e) => {
      const level = el("span", { class: `level level-${e.level}` }, e.level);
      return [clock(e.at), level, e.message];
    });
    put("events", table(["time", "level", "event"], rows, { id: "events-table", class: "compact events" }));
  }

  // -- the ledger entry ---------------------------------------------------------------------------------
  function ledger(job) {
    const l = job.ledger;
    if (!l) {
      put("ledger", note(FINAL.has(job.state) ? "No ledger entry for this job." : "The entry is written when the job succeeds."));
      return;
    }
    const rows = [];
    if (l.entry !== undefined && l.entry !== null) rows.push(["entry", String(l.entry)]);
    if (l.digest) rows.push(["digest", el("code", {}, l.digest)]);
    if (l.signed_by) rows.push(["signed by", l.signed_by.join(", ")]);
    if ("signatures_verified" in l) {
      rows.push(["signatures", el("span", { class: l.signatures_verified ? "good" : "bad" },
        l.signatures_verified ? "every signature verified" : "NOT all verified")]);
    }
    if (l.appended_at) rows.push(["appended at", l.appended_at.join(", ")]);
    if (l.reason) rows.push(["no entry", l.reason]);
    if ((l.problems || []).length) rows.push(["problems", l.problems.join("; ")]);
    put("ledger", table(["", ""], rows, { id: "ledger-table", class: "facts" }));
  }

  // -- model versions: this job in the registry (and, at B, the names that serve it) -----------------------
  async function models(job) {
    if (role === "C") {
      put("job-models", note("The arbiter holds no model part."));
      return;
    }
    if (job.state !== "succeeded") {
      put("job-models", note("A model version exists once the job succeeds."));
      return;
    }
    try {
      const data = await api("GET", "/v1/models");
      const mine = (data.models || []).find((m) => m.job_id === jobId);
      const served = Object.entries(data.served || {});
      const rows = [];
      if (mine) {
        rows.push(["version", jobId], ["model", mine.model || ""], ["dataset", mine.dataset || ""],
          ["features", (mine.feature_names || []).join(", ")], ["trained", mine.trained_at || ""]);
        if (mine.error) rows.push(["problem", mine.error]);
      }
      for (const [name, entry] of served) {
        if (entry.job_id === jobId) rows.push(["served as", el("strong", { class: "promoted" }, `${name} (promoted)`)]);
        else if ((entry.history || []).includes(jobId)) rows.push(["served before as", `${name} (now ${entry.job_id})`]);
      }
      if (role === "B" && !served.some(([, e]) => e.job_id === jobId)) {
        rows.push(["served as", `no name: promote it with POST /v1/models/NAME/promote {"job_id": "${jobId}"}`]);
      }
      put("job-models", rows.length ? table(["", ""], rows, { id: "job-models-table", class: "facts" })
        : note("No model part of this job is kept here."), el("p", {}, el("a", { href: "/ui/models" }, "all model versions")));
    } catch (error) {
      put("job-models", el("p", { class: "alert error" }, `model versions: ${error.message}`));
    }
  }

  // -- the report (party B), inline -----------------------------------------------------------------------
  function report(job) {
    if (body.report !== "1" || reportShown) return;
    if (job.state !== "succeeded" || job.coalition_of) {
      put("report", note(job.coalition_of ? "A coalition training has no report of its own."
        : "The report is written when the job succeeds."));
      return;
    }
    reportShown = true;
    const frame = el("iframe", { src: jobPath("/report"), title: "the job's report", id: "report-frame" });
    // Same origin: fit the frame to the report so that the page scrolls, not the frame.
    frame.addEventListener("load", () => {
      try {
        frame.style.height = `${frame.contentDocument.documentElement.scrollHeight + 24}px`;
      } catch (error) {
        // leave the default height
      }
    });
    put("report", el("p", {}, el("a", { href: jobPath("/report") }, "open the report on its own page")), frame);
  }

  async function refresh() {
    let job;
    try {
      job = await api("GET", jobPath());
      $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
      $("refreshed").classList.remove("error");
    } catch (error) {
      $("refreshed").textContent = `not updated: ${error.message}`;
      $("refreshed").classList.add("error");
      setTimeout(refresh, POLL_MS * 2);
      return;
    }
    const key = JSON.stringify([job.updated_at, job.state, job.epoch, job.waiting_for, job.activity, job.progress]);
    if (key !== lastDrawn) {
      lastDrawn = key;
      summary(job);
      timeline(job);
      curves(job);
      metrics(job);
      timings(job);
      events(job);
      ledger(job);
      await models(job);
      report(job);
      document.body.dataset.state = job.state;
      document.body.dataset.drawn = "1";
    } else if (!FINAL.has(job.state)) {
      summary(job); // the running time moves on
    }
    if (!FINAL.has(job.state)) setTimeout(refresh, POLL_MS);
  }

  refresh();
})();
