"use strict";
// The try-it page: POST /v1/rerank with the form's values; one column per instruction.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "rerank-sidecar-token";

async function describeApi() {
  // Whether a token is needed and the default instruction come from the API description.
  try {
    const api = await (await fetch("/openapi.json")).json();
    const rerank = api.paths["/v1/rerank"].post;
    if (rerank.security.length > 0) $("token-label").hidden = false;
    const instruction = api.components.schemas.RerankRequest.properties.instruction;
    $("instruction").placeholder = instruction.default || "";
    $("instruction-b").placeholder = instruction.default || "";
  } catch (error) {
    showStatus(`could not read /openapi.json: ${error}`, true);
  }
  try {
    const ready = await (await fetch("/readyz")).json();
    $("model").textContent = ready.model || "";
  } catch (error) {
    $("model").textContent = "";
  }
}

function showStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function rerank(query, documents, instruction, topN) {
  const body = { query, documents, return_documents: true };
  if (instruction) body.instruction = instruction;
  if (topN > 0) body.top_n = topN;
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const started = performance.now();
  const response = await fetch("/v1/rerank", { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await response.json();
  const latencyMs = performance.now() - started;
  if (!response.ok) {
    if (response.status === 401) $("token-label").hidden = false;
    const error = answer.error || {};
    throw new Error(`${response.status} ${error.type || ""}: ${error.message || "request failed"}`);
  }
  return { answer, latencyMs };
}

function renderColumn(title, { answer, latencyMs }) {
  const column = $("column").content.firstElementChild.cloneNode(true);
  column.querySelector(".title").textContent = title;
  const truncated = answer.meta.truncated_documents;
  column.querySelector(".meta").textContent =
    `${latencyMs.toFixed(0)} ms · ${answer.results.length} results · ${answer.model}` +
    (answer.model.includes(answer.meta.model_kind) ? "" : ` (${answer.meta.model_kind})`) +
    (answer.meta.model_kind === "bi-encoder" ? " · a bi-encoder ignores the instruction" : "") +
    (truncated ? ` · ${truncated} truncated` : "");
  column.querySelector(".meta").dataset.latencyMs = latencyMs.toFixed(1);
  const list = column.querySelector(".ranking");
  answer.results.forEach((result, rank) => {
    const item = $("result").content.firstElementChild.cloneNode(true);
    const oldPosition = result.index + 1;
    const newPosition = rank + 1;
    const moved = oldPosition - newPosition;
    item.dataset.index = String(result.index);
    item.dataset.score = String(result.relevance_score);
    item.querySelector(".new").textContent = `#${newPosition}`;
    const old = item.querySelector(".old");
    old.textContent = `was #${oldPosition} ` + (moved > 0 ? `▲${moved}` : moved < 0 ? `▼${-moved}` : "=");
    old.classList.add(moved > 0 ? "up" : moved < 0 ? "down" : "same");
    const width = Math.max(0, Math.min(1, result.relevance_score)) * 100;
    item.querySelector(".fill").style.width = `${width}%`;
    item.querySelector(".score").textContent = result.relevance_score.toFixed(4);
    item.querySelector(".text").textContent = result.document.text;
    list.appendChild(item);
  });
  return column;
}

async function submit(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  const documents = $("documents").value.split("\n").map((line) => line.trim()).filter(Boolean);
  const topN = Number($("top-n").value) || 0;
  const instructions = [$("instruction").value.trim()];
  if ($("compare").checked) instructions.push($("instruction-b").value.trim());
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("rank").disabled = true;
  showStatus("ranking…", false);
  try {
    const answers = await Promise.all(
      instructions.map((instruction) => rerank(query, documents, instruction, topN)));
    const columns = answers.map((answer, i) => {
      const instruction = instructions[i] || $("instruction").placeholder || "default instruction";
      const title = instructions.length > 1 ? `${"AB"[i]}: ${instruction}` : `Instruction: ${instruction}`;
      return renderColumn(title, answer);
    });
    $("results").replaceChildren(...columns);
    showStatus(`ranked ${documents.length} documents`, false);
  } catch (error) {
    $("results").replaceChildren();
    showStatus(String(error.message || error), true);
  } finally {
    $("rank").disabled = false;
  }
}

$("compare").addEventListener("change", () => {
  $("instruction-b-label").hidden = !$("compare").checked;
});
$("form").addEventListener("submit", submit);
$("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
describeApi();
