// Tables refreshed in place: one row per item, found again by its key, and a cell's text set only
// when it changed. A refresh every second then repaints the numbers that moved, not the whole
// table: the page is meant to stay open beside a running rig and cost it as little as it can.

/**
 * rows: [{ key, cells: [{ text, className, progress }], onClick }] in display order; `progress`
 * (0..1), where given, puts a progress bar before the text. `keyName` names the rows' data
 * attribute (data-session="...", data-job="...").
 */
export function updateRows(tbody, rows, keyName) {
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset[keyName], tr]));
  rows.forEach((row, index) => {
    let tr = existing.get(row.key);
    if (tr) {
      existing.delete(row.key);
    } else {
      tr = document.createElement("tr");
      tr.dataset[keyName] = row.key;
      tr.addEventListener("click", row.onClick);
    }
    row.cells.forEach((cell, i) => updateCell(tr.children[i] ?? tr.appendChild(document.createElement("td")), cell));
    tr.classList.toggle("chosen", Boolean(row.chosen));
    if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] ?? null);
  });
  for (const tr of existing.values()) tr.remove();
}

function updateCell(td, { text, className = "", progress }) {
  if (td.className !== className) td.className = className;
  if (progress === undefined) {
    if (td.textContent !== text) td.textContent = text;
    return;
  }
  if (!td.querySelector("progress")) {
    td.replaceChildren(document.createElement("progress"), document.createElement("span"));
  }
  const bar = td.querySelector("progress");
  bar.max = 1;
  if (bar.value !== progress) bar.value = progress;
  const label = td.querySelector("span");
  if (label.textContent !== text) label.textContent = text;
}
