"use strict";
// The study view's page logic: loads the image and overlays into the viewer, wires the
// overlay and window/level controls, region hover outlines, marks, the decision form and
// the keyboard (A / D / U choose, Enter records, J / K next / previous, O cycles overlays).

(function () {
  performance.mark("vigil:script"); // marks: where the page-load benchmark's time goes
  const data = JSON.parse(document.getElementById("study-data").textContent);
  const $ = (selector) => document.querySelector(selector);
  const status = $("#viewer-status");
  const viewer = new window.VigilViewer($("#viewer"), data);
  const form = $("#decision-form");
  const overlays = new Map(); // kind → Promise<{ kind, bitmap, legend }>

  function say(message, isError) {
    status.textContent = message;
    status.hidden = !message;
    status.classList.toggle("error", Boolean(isError));
  }

  // A failed fetch: the server's reason when it sent its error page, else the status.
  async function failure(response, what) {
    if (response.redirected) return `Your session ended: reload the page to log in (${what}).`;
    const text = await response.text();
    const page = new DOMParser().parseFromString(text, "text/html");
    const detail = page.querySelector("[data-error-detail]");
    return `Could not load ${what}: ${detail ? detail.textContent : response.status}`;
  }

  async function fetchOk(url, what) {
    const response = await fetch(url);
    if (!response.ok || response.redirected) throw new Error(await failure(response, what));
    return response;
  }

  function loadOverlay(kind) {
    if (!overlays.has(kind)) {
      const url = data.urls.overlay.replace("{kind}", kind);
      overlays.set(kind, fetchOk(url, "the overlay").then(async (response) => ({
        kind,
        legend: JSON.parse(response.headers.get("X-Vigil-Legend") || "null"),
        bitmap: await createImageBitmap(await response.blob()),
      })));
    }
    return overlays.get(kind);
  }

  // --- overlay, opacity, legend --------------------------------------------------------------
  const legend = $("#legend");
  function showLegend(info) {
    legend.replaceChildren();
    legend.hidden = !info;
    if (!info) return;
    const title = document.createElement("p");
    title.className = "legend-title";
    title.textContent = info.title;
    legend.append(title);
    if (info.type === "key") {
      for (const entry of info.entries) {
        const row = document.createElement("p");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = entry.colour;
        row.append(swatch, " " + entry.label);
        legend.append(row);
      }
      return;
    }
    const bar = document.createElement("div");
    bar.className = "legend-bar";
    bar.style.background = `linear-gradient(to right, ${info.colours.join(", ")})`;
    const ticks = document.createElement("div");
    ticks.className = "legend-ticks";
    for (const value of info.ticks) {
      const tick = document.createElement("span");
      tick.textContent = formatTick(value, Math.abs(info.vmax));
      ticks.append(tick);
    }
    legend.append(bar, ticks);
  }

  function formatTick(value, top) {
    if (value === 0) return "0";
    if (top >= 10) return value.toFixed(0);
    return top >= 0.1 ? value.toFixed(2) : value.toExponential(1);
  }

  let wanted = null; // the overlay last asked for: a slow earlier one must not replace it
  async function selectOverlay(kind) {
    wanted = kind;
    const radio = document.querySelector(`input[name="overlay"][value="${kind}"]`);
    if (radio) radio.checked = true;
    if (kind === "none") {
      viewer.setOverlay(null);
      showLegend(null);
      return;
    }
    try {
      const overlay = await loadOverlay(kind);
      performance.mark("vigil:overlay-loaded");
      if (wanted !== kind) return;
      viewer.setOverlay(overlay);
      showLegend(overlay.legend);
    } catch (error) {
      say(error.message, true);
    }
  }

  const overlayKinds = ["none", ...data.overlays];
  document.querySelectorAll('input[name="overlay"]').forEach((radio) =>
    radio.addEventListener("change", () => selectOverlay(radio.value)),
  );
  const opacity = $("#opacity");
  opacity.addEventListener("input", () => {
    viewer.setOpacity(opacity.value / 100);
    $("#opacity-value").textContent = `${opacity.value} %`;
  });

  // --- window / level, tools, zoom -----------------------------------------------------------
  viewer.onWindowChange = (win) => {
    $("#wl-readout").textContent = `W ${Math.round(win.width)} · L ${Math.round(win.center)}`;
  };
  $("#wl-preset").addEventListener("change", (event) => viewer.preset(event.target.value));
  document.querySelectorAll('input[name="tool"]').forEach((radio) =>
    radio.addEventListener("change", () => {
      viewer.tool = radio.value;
      viewer.canvas.dataset.tool = radio.value;
    }),
  );
  $("#zoom-in").addEventListener("click", () => viewer.zoomBy(1.25));
  $("#zoom-out").addEventListener("click", () => viewer.zoomBy(0.8));
  $("#zoom-reset").addEventListener("click", () => viewer.resetView());

  // --- regions: hover or focus a row to outline it --------------------------------------------
  const outlines = new Map();
  function loadRegions() {
    fetchOk(data.urls.regions, "the region outlines")
      .then((response) => response.json())
      .then((body) => body.regions.forEach((r) => outlines.set(r.name, r.outline)))
      .catch((error) => say(error.message, true));
  }
  document.querySelectorAll("#region-table tbody tr").forEach((row) => {
    const show = () => {
      row.classList.add("active");
      viewer.setOutline(outlines.get(row.dataset.region) || null);
    };
    const hide = () => {
      row.classList.remove("active");
      viewer.setOutline(null);
    };
    row.addEventListener("mouseenter", show);
    row.addEventListener("focus", show);
    row.addEventListener("mouseleave", hide);
    row.addEventListener("blur", hide);
  });

  // --- marks ---------------------------------------------------------------------------------
  const marksField = $("#marks-field");
  viewer.onMarksChange = (marks) => {
    marksField.value = JSON.stringify(marks);
    $("#marks-count").textContent = String(marks.length);
    const list = $("#marks-list");
    list.replaceChildren(...marks.map((mark, i) => {
      const item = document.createElement("li");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "quiet";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove mark ${i + 1}`);
      remove.addEventListener("click", () => viewer.removeMark(i));
      item.append(`x ${Math.round(mark.x)}, y ${Math.round(mark.y)} `, remove);
      return item;
    }));
  };
  viewer.onMarkRefused = () => say(`At most ${data.maxMarks} marks.`, true);

  // --- the decision form ---------------------------------------------------------------------
  const labelField = $("#label-field");
  function choose(decision) {
    const radio = form.querySelector(`input[name="decision"][value="${decision}"]`);
    radio.checked = true;
    // Agreeing with the AI means its finding, unless the clinician chose one already.
    if (decision === "agree" && !labelField.value) labelField.value = labelField.dataset.suggested;
  }
  form.querySelectorAll('input[name="decision"]').forEach((radio) =>
    radio.addEventListener("change", () => choose(radio.value)),
  );
  function amend(button) {
    $("#amends-field").value = button.dataset.id;
    $("#amending").hidden = false;
    choose(button.dataset.decision);
    labelField.value = button.dataset.label;
    $("#comment").value = button.dataset.comment;
    viewer.setMarks(JSON.parse(button.dataset.marks));
    form.scrollIntoView({ block: "nearest" });
    form.querySelector('input[name="decision"]:checked').focus();
  }
  document.querySelectorAll("button.amend").forEach((button) =>
    button.addEventListener("click", () => amend(button)),
  );
  $("#cancel-amend").addEventListener("click", () => {
    $("#amends-field").value = "";
    $("#amending").hidden = true;
  });
  form.addEventListener("submit", () => {
    form.querySelector('button[type="submit"]').disabled = true; // one decision per press
  });

  // --- keyboard ------------------------------------------------------------------------------
  const KEYS = { a: "agree", d: "disagree", u: "uncertain" };
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey || event.defaultPrevented) return;
    const target = event.target;
    const typing = target.matches("textarea, select, input[type=text], input[type=date], [contenteditable]");
    if (event.key === "Enter") {
      // Enter records the decision, except where Enter means something else.
      if (target.matches("button, a, select, summary") || (typing && !event.ctrlKey)) return;
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (typing || event.ctrlKey) return;
    const key = event.key.toLowerCase();
    if (KEYS[key]) {
      choose(KEYS[key]);
      form.scrollIntoView({ block: "nearest" }); // show what the key chose
    }
    else if (key === "j") window.location.assign(data.urls.next);
    else if (key === "k") window.location.assign(data.urls.previous);
    else if (key === "o") {
      const current = document.querySelector('input[name="overlay"]:checked');
      const at = overlayKinds.indexOf(current ? current.value : "none");
      selectOverlay(overlayKinds[(at + 1) % overlayKinds.length]);
    } else return;
    event.preventDefault();
  });

  // --- start: image and first overlay at once (both preloaded by the page) -------------------
  viewer.setMarks(JSON.parse(marksField.value || "[]"));
  const picked = document.querySelector('input[name="overlay"]:checked');
  const first = picked ? picked.value : "none";
  if (first !== "none") loadOverlay(first).catch(() => {}); // start now; errors show below
  fetchOk(data.urls.image, "the image")
    .then((response) => response.arrayBuffer())
    .then((buffer) => {
      performance.mark("vigil:image-loaded");
      viewer.setImage(buffer);
      say("");
      selectOverlay(first);
      loadRegions();
    })
    .catch((error) => say(error.message, true));
})();
