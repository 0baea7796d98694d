"use strict";
// The study view's canvas: the image with window/level in modality units, zoom and pan, one
// overlay at an opacity, the outline of a hovered region and the clinician's marks.
// Coordinates: "view" pixels are those of the screen-sized image the server sends; "image"
// pixels are the source image's (what marks and region outlines are stored in).

(function () {
  const MARK_RADIUS = 9; // CSS pixels, whatever the zoom
  const ZOOM_LIMITS = [0.5, 16];

  // Decode a "vigil-view-1" file: a JSON header, then uint16 codes (see view_image.py).
  function decodeView(buffer) {
    const headerLength = new DataView(buffer).getUint32(0, true);
    const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
    if (meta.format !== "vigil-view-1") throw new Error("unknown image format " + meta.format);
    const codes = new Uint16Array(buffer, 4 + headerLength, meta.width * meta.height);
    return { meta, codes };
  }

  // Grey level 0..255 of a modality value under a window (DICOM PS3.3 C.11.2.1.2 formulas).
  function windowed(value, win) {
    const c = win.center, w = win.width;
    let y;
    if (win.function === "SIGMOID") y = 255 / (1 + Math.exp((-4 * (value - c)) / w));
    else if (win.function === "LINEAR_EXACT") y = ((value - c) / w + 0.5) * 255;
    else if (w <= 1) y = value > c - 0.5 ? 255 : 0;
    else y = ((value - (c - 0.5)) / (w - 1) + 0.5) * 255;
    return y < 0 ? 0 : y > 255 ? 255 : Math.round(y);
  }

  class Viewer {
    constructor(canvas, { columns, rows, maxMarks }) {
      this.canvas = canvas;
      this.maxMarks = maxMarks;
      this.ctx = canvas.getContext("2d");
      this.columns = columns;
      this.rows = rows;
      this.image = null; // { meta, codes, picture: canvas with the windowed image }
      this.window = null; // { center, width, function } in modality units
      this.overlay = null; // { kind, bitmap, legend }
      this.opacity = 0.5;
      this.zoom = 1;
      this.pan = { x: 0, y: 0 }; // CSS pixels
      this.tool = "wl";
      this.outline = null; // polygon in image pixels
      this.marks = []; // [{ x, y }] in image pixels
      this.onMarksChange = () => {};
      this.onWindowChange = () => {};
      this.onMarkRefused = () => {};
      this.firstOverlayPainted = false;
      this.pendingFrame = false;
      new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
      this.listen();
    }

    setImage(buffer) {
      const { meta, codes } = decodeView(buffer);
      const picture = document.createElement("canvas");
      picture.width = meta.width;
      picture.height = meta.height;
      this.image = { meta, codes, picture, pixels: picture.getContext("2d").createImageData(meta.width, meta.height) };
      this.setWindow({ ...meta.window });
    }

    // Presets relative to the image: the window it came with, all of it, or narrower/wider.
    preset(name) {
      if (!this.image) return;
      const meta = this.image.meta, base = meta.window;
      const [low, high] = meta.range;
      const windows = {
        default: { ...base },
        full: { center: (low + high) / 2, width: Math.max(high - low, 1), function: "LINEAR_EXACT" },
        narrow: { ...base, width: Math.max(base.width / 2, 1) },
        wide: { ...base, width: base.width * 2 },
      };
      this.setWindow(windows[name] || windows.default);
    }

    setWindow(win) {
      this.window = win;
      const { meta, codes, picture, pixels } = this.image;
      const levels = Math.round((meta.range[1] - meta.range[0]) / meta.step) + 1;
      const lut = new Uint8Array(Math.min(levels, 65536));
      for (let code = 0; code < lut.length; code++) {
        const grey = windowed(meta.offset + code * meta.step, win);
        lut[code] = meta.invert ? 255 - grey : grey;
      }
      const out = new Uint32Array(pixels.data.buffer); // one write per pixel: A B G R bytes
      for (let i = 0; i < codes.length; i++) {
        const g = lut[codes[i]];
        out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
      picture.getContext("2d").putImageData(pixels, 0, 0);
      this.onWindowChange(win);
      this.requestDraw();
    }

    setOverlay(overlay) {
      this.overlay = overlay;
      // The first overlay is drawn at once rather than on the next frame: it is what the
      // clinician is waiting for.
      if (overlay && this.image && !this.firstOverlayPainted) this.draw();
      else this.requestDraw();
    }

    setOpacity(value) {
      this.opacity = value;
      this.requestDraw();
    }

    setOutline(polygon) {
      this.outline = polygon;
      this.requestDraw();
    }

    setMarks(marks) {
      this.marks = marks.map((m) => ({ x: m.x, y: m.y }));
      this.onMarksChange(this.marks);
      this.requestDraw();
    }

    removeMark(index) {
      this.marks.splice(index, 1);
      this.setMarks(this.marks);
    }

    zoomBy(factor, at) {
      const [low, high] = ZOOM_LIMITS;
      const zoom = Math.min(high, Math.max(low, this.zoom * factor));
      const point = at || { x: this.canvas.clientWidth / 2, y: this.canvas.clientHeight / 2 };
      const before = this.toView(point);
      this.zoom = zoom;
      // Keep the image point under the cursor where it was.
      const t = this.transform();
      this.pan.x += point.x - (t.x + before.x * t.scale);
      this.pan.y += point.y - (t.y + before.y * t.scale);
      this.requestDraw();
    }

    resetView() {
      this.zoom = 1;
      this.pan = { x: 0, y: 0 };
      this.requestDraw();
    }

    // View pixels → CSS pixels of the canvas: scale and offset.
    transform() {
      const meta = this.image ? this.image.meta : { width: this.columns, height: this.rows };
      const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
      const scale = Math.min(w / meta.width, h / meta.height) * this.zoom;
      return {
        scale,
        x: (w - meta.width * scale) / 2 + this.pan.x,
        y: (h - meta.height * scale) / 2 + this.pan.y,
      };
    }

    toView(point) {
      const t = this.transform();
      return { x: (point.x - t.x) / t.scale, y: (point.y - t.y) / t.scale };
    }

    viewPerImage() {
      return this.image ? this.image.meta.width / this.columns : 1;
    }

    resize() {
      const dpr = window.devicePixelRatio || 1;
      this.canvas.width = Math.round(this.canvas.clientWidth * dpr);
      this.canvas.height = Math.round(this.canvas.clientHeight * dpr);
      this.draw();
    }

    requestDraw() {
      if (this.pendingFrame) return;
      this.pendingFrame = true;
      requestAnimationFrame(() => {
        this.pendingFrame = false;
        this.draw();
      });
    }

    draw() {
      const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      if (!this.image) return;
      const t = this.transform();
      ctx.setTransform(t.scale * dpr, 0, 0, t.scale * dpr, t.x * dpr, t.y * dpr);
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(this.image.picture, 0, 0);
      if (this.overlay) {
        ctx.globalAlpha = this.opacity;
        ctx.drawImage(this.overlay.bitmap, 0, 0, this.image.meta.width, this.image.meta.height);
        ctx.globalAlpha = 1;
      }
      const k = this.viewPerImage(), px = 1 / t.scale; // one CSS pixel in view pixels
      if (this.outline) this.drawOutline(ctx, k, px);
      this.drawMarks(ctx, k, px);
      if (this.overlay && !this.firstOverlayPainted) this.markFirstOverlay();
    }

    drawOutline(ctx, k, px) {
      ctx.beginPath();
      this.outline.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
      ctx.closePath();
      ctx.lineWidth = 4 * px;
      ctx.strokeStyle = "rgba(0, 0, 0, 0.8)"; // a dark rim keeps the line visible on white
      ctx.stroke();
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = "#ffe14d";
      ctx.stroke();
    }

    drawMarks(ctx, k, px) {
      ctx.font = `bold ${12 * px}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      this.marks.forEach((mark, i) => {
        const x = mark.x * k, y = mark.y * k;
        ctx.beginPath();
        ctx.arc(x, y, MARK_RADIUS * px, 0, 2 * Math.PI);
        ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
        ctx.fill();
        ctx.lineWidth = 2 * px;
        ctx.strokeStyle = "#4dd2ff";
        ctx.stroke();
        ctx.fillStyle = "#fff";
        ctx.fillText(String(i + 1), x, y);
      });
    }

    // The first frame with the image and an overlay: marked for the page-load benchmark once
    // the browser has painted it (a task queued from the next animation frame runs after).
    markFirstOverlay() {
      this.firstOverlayPainted = true;
      requestAnimationFrame(() =>
        setTimeout(() => {
          performance.mark("vigil:first-overlay");
          this.canvas.dataset.firstOverlayMs = String(Math.round(performance.now()));
        }, 0),
      );
    }

    listen() {
      const canvas = this.canvas;
      let drag = null;
      canvas.addEventListener("pointerdown", (event) => {
        if (!this.image) return;
        canvas.setPointerCapture(event.pointerId);
        const panning = this.tool === "pan" || event.shiftKey || event.button === 1;
        drag = { x: event.offsetX, y: event.offsetY, moved: 0, panning, window: { ...this.window }, pan: { ...this.pan } };
      });
      canvas.addEventListener("pointermove", (event) => {
        if (!drag) return;
        const dx = event.offsetX - drag.x, dy = event.offsetY - drag.y;
        drag.moved = Math.max(drag.moved, Math.abs(dx) + Math.abs(dy));
        if (drag.panning) {
          this.pan = { x: drag.pan.x + dx, y: drag.pan.y + dy };
          this.requestDraw();
        } else if (this.tool === "wl") {
          // Across the canvas's width: the whole value range of the image.
          const [low, high] = this.image.meta.range;
          const perPixel = (high - low) / Math.max(canvas.clientWidth, 1);
          const width = Math.max(drag.window.width + dx * perPixel, 1);
          this.setWindow({ ...drag.window, width, center: drag.window.center - dy * perPixel });
        }
      });
      canvas.addEventListener("pointerup", (event) => {
        if (drag && this.tool === "mark" && !drag.panning && drag.moved < 5) this.addMarkAt(event);
        drag = null;
      });
      canvas.addEventListener("pointercancel", () => (drag = null));
      canvas.addEventListener("wheel", (event) => {
        event.preventDefault();
        this.zoomBy(Math.exp(-event.deltaY * 0.0015), { x: event.offsetX, y: event.offsetY });
      }, { passive: false });
      canvas.addEventListener("keydown", (event) => {
        const steps = { ArrowLeft: [20, 0], ArrowRight: [-20, 0], ArrowUp: [0, 20], ArrowDown: [0, -20] };
        if (event.key === "+" || event.key === "=") this.zoomBy(1.25);
        else if (event.key === "-") this.zoomBy(0.8);
        else if (event.key === "0") this.resetView();
        else if (steps[event.key]) {
          this.pan.x += steps[event.key][0];
          this.pan.y += steps[event.key][1];
          this.requestDraw();
        } else return;
        event.preventDefault();
      });
    }

    addMarkAt(event) {
      const view = this.toView({ x: event.offsetX, y: event.offsetY });
      const k = this.viewPerImage();
      const x = Math.round((view.x / k) * 10) / 10, y = Math.round((view.y / k) * 10) / 10;
      if (x < 0 || y < 0 || x >= this.columns || y >= this.rows) return; // outside the image
      if (this.marks.length >= this.maxMarks) return this.onMarkRefused();
      this.setMarks([...this.marks, { x, y }]);
    }
  }

  window.VigilViewer = Viewer;
})();
