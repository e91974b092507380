// Safe rendering of hostile text: every log value reaches the page through
// createTextNode/textContent, never as HTML. Bidirectional control characters (which
// can make a line read differently from what it holds) are shown as visible marks
// like ⟨U+202E⟩ instead of being applied.

const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/** A fragment showing `value` as plain text, bidi controls made visible. */
export function safeText(value) {
  const text = typeof value === "string" ? value : String(value);
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(BIDI)) {
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    const mark = document.createElement("span");
    mark.className = "bidi";
    mark.textContent = "⟨U+" + m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "⟩";
    mark.title = "bidirectional control character (shown, not applied)";
    frag.append(mark);
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

/** A new element with a class and text content (safe). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.append(safeText(text));
  return node;
}

/** The value at a dotted path of a document (`kubernetes.pod.name`), as Kibana reads it:
 *  a key with dots in it is found too. */
export function getField(doc, path) {
  if (doc === null || typeof doc !== "object") return undefined;
  if (Object.prototype.hasOwnProperty.call(doc, path)) return doc[path];
  const dot = path.indexOf(".");
  if (dot < 0) return undefined;
  for (let i = dot; i >= 0; i = path.indexOf(".", i + 1)) {
    const head = path.slice(0, i);
    if (Object.prototype.hasOwnProperty.call(doc, head)) {
      const found = getField(doc[head], path.slice(i + 1));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** Every leaf path of a document (`kubernetes.pod.name`), for the field sidebar. */
export function leafPaths(doc, prefix = "", out = new Set()) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    if (prefix) out.add(prefix);
    return out;
  }
  for (const key of Object.keys(doc)) leafPaths(doc[key], prefix ? prefix + "." + key : key, out);
  return out;
}

/** `2026-01-15T10:00:00.123Z` from nanoseconds since the epoch (a number or string). */
export function formatTime(ns) {
  try {
    return new Date(Number(BigInt(ns) / 1000000n)).toISOString();
  } catch {
    return String(ns); // outside the years a Date can show: the number itself
  }
}
