// The bicross search page: one /search call per configuration, results drawn with DOM nodes.
// Document text only ever reaches the page as text nodes (textContent / append(string)), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "bicross.apiKey";
  const STAGE_ORDER = ["encode", "dense", "bm25", "fuse", "rerank", "queue", "total"];
  const PIPELINE_STAGES = new Set(["encode", "dense", "bm25", "fuse", "rerank"]); // drawn in the latency bar
  const LABELS = ["A", "B"];
  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children; strings become text nodes. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== undefined && child !== null && child !== false) node.append(child);
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  /** FastAPI's `detail`: a string, or a list of validation errors. */
  function detailText(body, status) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
    }
    return `HTTP ${status}`;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      let message = detailText(data, response.status);
      if (response.status === 401) message += " (set the API key at the top of the page)";
      if (response.status === 429) message += ` (busy: retry in ${response.headers.get("Retry-After") || "a few"} s)`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  /** `year>=2010; journal=Nature,Cell` -> ["year>=2010", "journal=Nature,Cell"] (a quoted `;` stays). */
  function parseFilters(text) {
    const parts = [];
    let current = "";
    let quote = null;
    for (const ch of text) {
      if (quote) {
        if (ch === quote) quote = null;
      } else if (ch === '"' || ch === "'") {
        quote = ch;
      } else if (ch === ";" || ch === "\n") {
        parts.push(current);
        current = "";
        continue;
      }
      current += ch;
    }
    parts.push(current);
    return parts.map((p) => p.trim()).filter((p) => p);
  }

  // ---- configurations (the knobs) ----

  const configs = [];

  function addConfig(label) {
    const fieldset = $("knobs-template").content.firstElementChild.cloneNode(true);
    fieldset.dataset.config = label;
    fieldset.querySelector("legend").textContent = `Configuration ${label}`;
    for (const input of fieldset.querySelectorAll("[data-knob]")) {
      input.name = `${label}-${input.dataset.knob}`;
    }
    $("knobs").append(fieldset);
    configs.push(fieldset);
  }

  function readKnobs(fieldset) {
    const knobs = {};
    for (const input of fieldset.querySelectorAll("[data-knob]")) {
      const name = input.dataset.knob;
      if (input.type === "checkbox") knobs[name] = input.checked;
      else if (input.value !== "") knobs[name] = input.type === "number" ? Number(input.value) : input.value;
    }
    return knobs;
  }

  function describe(knobs) {
    const parts = [knobs.first_stage || "default first stage", knobs.rerank ? "rerank" : "no rerank"];
    for (const [name, label] of [["top_k", "top_k"], ["top_n", "hits"], ["rerank_depth", "depth"], ["rerank_weight", "w"]]) {
      if (knobs[name] !== undefined) parts.push(`${label} ${knobs[name]}`);
    }
    return parts.join(" · ");
  }

  function abMode() {
    return $("ab").checked;
  }

  function showConfigs() {
    configs.forEach((fieldset, i) => {
      fieldset.hidden = i > 0 && !abMode();
      fieldset.querySelector("legend").textContent = abMode() ? `Configuration ${LABELS[i]}` : "Pipeline";
    });
    document.body.classList.toggle("ab-mode", abMode());
  }

  // ---- results ----

  const number = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  const ms = (x) => `${Number(x) < 10 ? Number(x).toFixed(1) : Math.round(Number(x))} ms`;

  function moveBadge(hit) {
    const move = hit.first_stage_rank - hit.rank; // > 0: the reranker moved it up
    const kind = move > 0 ? "up" : move < 0 ? "down" : "same";
    const text = move > 0 ? `▲ ${move}` : move < 0 ? `▼ ${-move}` : "=";
    const said = move > 0 ? `up ${move}` : move < 0 ? `down ${-move}` : "unchanged";
    return el("span", { class: `move ${kind}`, dataset: { move: String(move) },
                        title: `first stage #${hit.first_stage_rank} → #${hit.rank}`,
                        "aria-label": `${said} from first-stage rank ${hit.first_stage_rank}` }, text);
  }

  /** How this hit compares with the other configuration's list: only here, another rank, or the same. */
  function diffBadge(hit, otherRanks, otherLabel) {
    if (!otherRanks) return null;
    const other = otherRanks.get(hit.id);
    if (other === undefined) return { kind: "only", badge: el("span", { class: "diff only" }, `not in ${otherLabel}`) };
    if (other !== hit.rank) return { kind: "rank", badge: el("span", { class: "diff rank" }, `${otherLabel}: #${other}`) };
    return { kind: "same", badge: el("span", { class: "diff same" }, `${otherLabel}: same`) };
  }

  function metadataList(metadata) {
    const entries = Object.entries(metadata || {});
    if (!entries.length) return null;
    return el("ul", { class: "metadata" },
      entries.map(([key, value]) => el("li", { dataset: { field: key } },
        el("span", { class: "key" }, key), " ", typeof value === "string" ? value : JSON.stringify(value))));
  }

  function renderHit(hit, otherRanks, otherLabel) {
    const diff = diffBadge(hit, otherRanks, otherLabel);
    return el("li", { class: `hit${diff ? ` diff-${diff.kind}` : ""}`,
                      dataset: { id: hit.id, rank: String(hit.rank), firstStageRank: String(hit.first_stage_rank),
                                 diff: diff ? diff.kind : undefined } },
      el("div", { class: "ranks" },
        el("span", { class: "rank", title: "final rank" }, `#${hit.rank}`),
        moveBadge(hit),
        el("span", { class: "first-stage-rank", title: "first-stage rank" }, `1st stage #${hit.first_stage_rank}`)),
      el("div", { class: "body" },
        el("h3", { class: "title" }, hit.title || hit.id, diff ? diff.badge : null),
        el("p", { class: "snippet" }, hit.snippet),
        el("p", { class: "scores" },
          el("span", { class: "score-first" }, `first stage ${number(hit.first_stage_score)}`),
          el("span", { class: "score-rerank" }, `rerank ${number(hit.rerank_score)}`),
          el("span", { class: "score-final" }, `final ${number(hit.score)}`)),
        el("p", { class: "doc-id" }, `id ${hit.id}`),
        metadataList(hit.metadata)));
  }

  function renderTimings(timings) {
    const stages = Object.keys(timings).sort((a, b) => {
      const ia = STAGE_ORDER.indexOf(a), ib = STAGE_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    const pipeline = stages.filter((s) => PIPELINE_STAGES.has(s));
    const sum = pipeline.reduce((total, s) => total + Math.max(0, timings[s]), 0) || 1;
    const bar = el("div", { class: "latency-bar", "aria-hidden": "true" },
      pipeline.map((stage) => {
        const part = el("span", { class: `stage-${stage}`, title: `${stage} ${ms(timings[stage])}` });
        part.style.width = `${(100 * Math.max(0, timings[stage])) / sum}%`;
        return part;
      }));
    return el("div", { class: "timings" }, bar,
      el("ul", { class: "stages" }, stages.map((stage) =>
        el("li", { class: `stage stage-${stage}`, dataset: { stage } }, el("span", { class: "key" }, stage), " ", ms(timings[stage])))));
  }

  function renderColumn(result, knobs, label, otherRanks, otherLabel) {
    return el("section", { class: "column", dataset: { config: label } },
      el("h2", {}, label ? `${label}: ` : "", el("span", { class: "config-description" }, describe(knobs))),
      renderTimings(result.timings_ms),
      result.hits.length
        ? el("ol", { class: "hits" }, result.hits.map((hit) => renderHit(hit, otherRanks, otherLabel)))
        : el("p", { class: "empty" }, "No hits (a filter may exclude every document)."));
  }

  function abSummary(a, b) {
    const rankA = new Map(a.hits.map((h) => [h.id, h.rank]));
    const rankB = new Map(b.hits.map((h) => [h.id, h.rank]));
    const shared = [...rankA.keys()].filter((id) => rankB.has(id));
    const moved = shared.filter((id) => rankA.get(id) !== rankB.get(id)).length;
    const delta = b.timings_ms.total - a.timings_ms.total;
    return `A and B share ${shared.length} of ${Math.max(rankA.size, rankB.size)} hits; ${moved} at a different rank; ` +
      `${rankA.size - shared.length} only in A, ${rankB.size - shared.length} only in B. ` +
      `Total: A ${ms(a.timings_ms.total)}, B ${ms(b.timings_ms.total)} (B ${delta >= 0 ? "+" : "−"}${ms(Math.abs(delta))}).`;
  }

  let searches = 0;

  function render(results, knobs) {
    const container = $("results");
    container.replaceChildren();
    container.classList.toggle("ab", results.length === 2);
    if (results.length === 2) {
      const ranks = results.map((r) => new Map(r.hits.map((h) => [h.id, h.rank])));
      container.append(renderColumn(results[0], knobs[0], "A", ranks[1], "B"),
                       renderColumn(results[1], knobs[1], "B", ranks[0], "A"));
      $("ab-summary").textContent = abSummary(results[0], results[1]);
      $("ab-summary").hidden = false;
    } else {
      container.append(renderColumn(results[0], knobs[0], "", null, ""));
      $("ab-summary").hidden = true;
    }
    searches += 1;
    container.dataset.searches = String(searches); // lets tests wait for a given search's results
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  async function search(event) {
    event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    const common = { query, filters: parseFilters($("filters").value) };
    if ($("collection").value) common.collection = $("collection").value;
    const active = abMode() ? configs : configs.slice(0, 1);
    const knobs = active.map(readKnobs);
    $("search-button").disabled = true;
    $("results").setAttribute("aria-busy", "true");
    showError("");
    try {
      const results = await Promise.all(knobs.map((k) => api("POST", "/search", { ...common, ...k })));
      render(results, knobs);
    } catch (error) {
      showError(error.message);
      $("results").dataset.failed = String(Number($("results").dataset.failed || 0) + 1);
    } finally {
      $("search-button").disabled = false;
      $("results").removeAttribute("aria-busy");
    }
  }

  // ---- server status and collections ----

  async function connect() {
    const status = $("status");
    try {
      const ready = await fetch("/ready").then((r) => r.json());
      if (ready.status !== "ready") {
        status.textContent = ready.status === "failed" ? `models failed to load: ${ready.detail}` : "models loading…";
        if (ready.status === "loading") setTimeout(connect, 1000);
        return;
      }
      const { collections } = await api("GET", "/collections");
      const select = $("collection");
      select.replaceChildren(...collections.map((c) => el("option", { value: c.name }, c.name)));
      $("collection-label").hidden = collections.length < 2;
      status.textContent = collections.map((c) =>
        `${c.name}: ${c.documents} documents · ${c.model}${c.reranker ? ` → ${c.reranker}` : " (no reranker)"}`).join("; ");
      status.dataset.state = "ready";
    } catch (error) {
      status.textContent = error.message;
      status.dataset.state = "error";
      if (error.status === 401) document.querySelector("details.key").open = true;
    }
  }

  function init() {
    LABELS.forEach(addConfig);
    $("api-key").value = apiKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
      connect();
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      $("api-key").value = "";
      connect();
    });
    $("ab").addEventListener("change", showConfigs);
    $("search-form").addEventListener("submit", search);
    showConfigs();
    connect();
  }

  init();
})();
