
// Sortable tables: numbers by their data-value, text in natural order; click or Enter.
for (const table of document.querySelectorAll("table.sortable")) {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((header, column) => {
    header.tabIndex = 0;
    const numeric = header.dataset.type === "number";
    const key = (row) => {
      const cell = row.cells[column];
      const value = cell.dataset.value ?? cell.textContent.trim();
      return numeric ? parseFloat(value) : value;
    };
    const sort = () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        const order = numeric ? x - y : x.localeCompare(y, undefined, { numeric: true });
        return ascending ? order : -order;
      });
      body.append(...rows);
    };
    header.addEventListener("click", sort);
    header.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        sort();
      }
    });
  });
}

// Filter boxes: hide the rows of the named table whose first cell does not contain the text.
for (const input of document.querySelectorAll("input[data-filter]")) {
  const table = document.getElementById(input.dataset.filter);
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      row.hidden = needle !== "" && !row.cells[0].textContent.toLowerCase().includes(needle);
    }
  });
}

// plotly.js travels gzipped (a quarter of its size); unpack it, run it, then draw the charts.
async function loadPlotly() {
  const packed = document.getElementById("plotly-bundle").textContent.trim();
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  new Function(await new Response(stream).text()).call(window);
}

loadPlotly().then(() => {
  for (const [id, figure] of Object.entries(FIGURES)) {
    Plotly.newPlot(id, figure.data, figure.layout, PLOTLY_CONFIG);
  }
});
