// The histogram above the results: one SVG bar per bucket, drawn with createElementNS
// (no library). Dragging across it selects a time range; a click on one bar selects
// that bar. `onZoom(fromNs, toNs)` receives the selection as BigInt nanoseconds.

import { formatTime } from "./text.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000;
const H = 100;

export class Histogram {
  constructor(root, axis, onZoom) {
    this.root = root;
    this.axis = axis;
    this.onZoom = onZoom;
    this.data = null;
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.bars = document.createElementNS(SVG, "g");
    this.selection = document.createElementNS(SVG, "rect");
    this.selection.setAttribute("class", "selection");
    this.selection.setAttribute("y", "0");
    this.selection.setAttribute("height", String(H));
    this.selection.setAttribute("width", "0");
    this.svg.append(this.bars, this.selection);
    root.replaceChildren(this.svg);
    this.dragFrom = null;
    this.svg.addEventListener("pointerdown", (e) => this.down(e));
    this.svg.addEventListener("pointermove", (e) => this.move(e));
    this.svg.addEventListener("pointerup", (e) => this.up(e));
  }

  show(data) {
    this.data = data;
    const counts = data.counts;
    const peak = Math.max(1, ...counts);
    const width = W / Math.max(1, counts.length);
    const rects = counts.map((c, k) => {
      const r = document.createElementNS(SVG, "rect");
      const h = c ? Math.max(2, (c / peak) * (H - 4)) : 0;
      r.setAttribute("x", String(k * width + width * 0.1));
      r.setAttribute("width", String(width * 0.8));
      r.setAttribute("y", String(H - h));
      r.setAttribute("height", String(h));
      r.setAttribute("class", "bar");
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${formatTime(this.time(k))}: ${c}`;
      r.append(title);
      return r;
    });
    this.bars.replaceChildren(...rects);
    const [start, step, end] = this.axis;
    start.textContent = counts.length ? formatTime(this.time(0)) : "";
    end.textContent = counts.length ? formatTime(this.time(counts.length)) : "";
    step.textContent = counts.length ? humanStep(BigInt(data.step)) + " per bar" : "";
  }

  time(k) {
    return BigInt(this.data.start) + BigInt(k) * BigInt(this.data.step);
  }

  fraction(e) {
    const box = this.svg.getBoundingClientRect();
    return Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
  }

  down(e) {
    if (!this.data || !this.data.counts.length) return;
    this.dragFrom = this.fraction(e);
    this.svg.setPointerCapture(e.pointerId);
    this.draw(this.dragFrom, this.dragFrom);
  }

  move(e) {
    if (this.dragFrom !== null) this.draw(this.dragFrom, this.fraction(e));
  }

  up(e) {
    if (this.dragFrom === null) return;
    let a = this.dragFrom;
    let b = this.fraction(e);
    this.dragFrom = null;
    this.draw(0, 0);
    if (a > b) [a, b] = [b, a];
    const n = this.data.counts.length;
    if ((b - a) * this.svg.getBoundingClientRect().width < 4) {
      const k = Math.min(n - 1, Math.floor(a * n)); // a click: that bar
      this.onZoom(this.time(k), this.time(k + 1) - 1n);
      return;
    }
    const span = BigInt(this.data.step) * BigInt(n);
    const scale = 1000000n;
    const from = BigInt(this.data.start) + (span * BigInt(Math.round(a * 1e6))) / scale;
    const to = BigInt(this.data.start) + (span * BigInt(Math.round(b * 1e6))) / scale;
    this.onZoom(from, to);
  }

  draw(a, b) {
    const lo = Math.min(a, b);
    this.selection.setAttribute("x", String(lo * W));
    this.selection.setAttribute("width", String(Math.abs(b - a) * W));
  }
}

export function humanStep(ns) {
  const s = ns / 1000000000n;
  for (const [unit, size] of [["d", 86400n], ["h", 3600n], ["m", 60n]]) {
    if (s >= size && s % size === 0n) return `${s / size}${unit}`;
  }
  if (s && ns % 1000000000n === 0n) return `${s}s`;
  return ns % 1000000n === 0n ? `${ns / 1000000n}ms` : `${ns}ns`;
}
