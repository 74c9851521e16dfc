"use strict";
// Renders /openapi.json readably: each operation, its request fields and its responses.

let schemas = {};

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attributes);
  node.append(...children);
  return node;
}

function resolve(schema) {
  if (schema && schema.$ref) return schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeName(schema) {
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeName).join(" | ");
  if (schema.type === "array") return `array of ${typeName(schema.items || {})}`;
  return schema.type || "any";
}

function constraints(schema) {
  const notes = [];
  for (const key of ["minLength", "minItems", "minimum", "exclusiveMinimum", "maximum"]) {
    if (schema[key] !== undefined) notes.push(`${key} ${schema[key]}`);
  }
  for (const option of schema.anyOf || []) notes.push(...constraints(option));
  return notes;
}

function fieldsTable(reference) {
  const schema = resolve(reference);
  const name = reference.$ref ? reference.$ref.split("/").pop() : "";
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties || {}).map(([field, property]) => {
    const notes = constraints(property);
    const detail = [property.description || ""];
    if (property.default !== undefined && property.default !== null) {
      detail.push(`default: ${JSON.stringify(property.default)}`);
    }
    if (notes.length) detail.push(notes.join(", "));
    return element("tr", {},
      element("td", {}, element("code", {}, field)),
      element("td", {}, typeName(property)),
      element("td", {}, required.has(field) ? "required" : ""),
      element("td", {}, detail.filter(Boolean).join(" · ")));
  });
  const nested = Object.values(schema.properties || {})
    .flatMap((property) => [property, property.items || {}, ...(property.anyOf || [])])
    .filter((property) => property.$ref)
    .map((property) => property.$ref);
  return { name, rows, nested };
}

function schemaSection(title, reference) {
  const section = element("div", {}, element("h3", {}, title));
  const seen = new Set();
  const queue = [reference];
  while (queue.length) {
    const current = queue.shift();
    const key = current.$ref || JSON.stringify(current);
    if (seen.has(key)) continue;
    seen.add(key);
    const { name, rows, nested } = fieldsTable(current);
    if (!rows.length) continue;
    section.append(element("p", {}, element("code", {}, name)),
      element("table", {}, element("tr", {}, ...["field", "type", "", "notes"].map(
        (heading) => element("th", {}, heading))), ...rows));
    queue.push(...nested.map(($ref) => ({ $ref })));
  }
  return section;
}

function operationCard(path, method, operation) {
  const card = element("section", { className: "operation" },
    element("h2", {}, element("span", { className: `method ${method}` }, method.toUpperCase()), path),
    element("p", {}, operation.summary || ""));
  if (operation.security && operation.security.length) {
    card.append(element("p", { className: "muted" }, "needs Authorization: Bearer <token>"));
  }
  const body = operation.requestBody;
  if (body) card.append(schemaSection("Request body", body.content["application/json"].schema));
  const responses = element("table", {}, element("tr", {},
    element("th", {}, "status"), element("th", {}, "body"), element("th", {}, "when")));
  for (const [status, response] of Object.entries(operation.responses)) {
    const content = response.content || {};
    const schema = content["application/json"] ? content["application/json"].schema : null;
    responses.append(element("tr", {}, element("td", {}, status),
      element("td", {}, schema ? typeName(schema) : Object.keys(content).join(", ")),
      element("td", {}, response.description || "")));
  }
  card.append(element("h3", {}, "Responses"), responses);
  const ok = (operation.responses["200"] || {}).content || {};
  if (ok["application/json"] && ok["application/json"].schema.$ref) {
    card.append(schemaSection("200 body", ok["application/json"].schema));
  }
  return card;
}

async function render() {
  const api = await (await fetch("/openapi.json")).json();
  schemas = api.components.schemas;
  document.getElementById("api-title").textContent = `${api.info.title} API`;
  document.getElementById("api-version").textContent = `OpenAPI ${api.openapi}`;
  document.getElementById("api-description").textContent = api.info.description;
  const operations = document.getElementById("operations");
  for (const [path, item] of Object.entries(api.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      operations.append(operationCard(path, method, operation));
    }
  }
}

render();
