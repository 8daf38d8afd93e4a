// hookwire-sse browser client: a dependency-free ES module.
//
// Applies version-keyed patch messages with the same rules as the Rust
// `apply_patch_message` (genesis, overlays, `_resync`, gaps -> behind), refetches
// the state on "behind", and reconnects with the last version when the browser
// gives up (non-200, e.g. a 503 during a deploy).
//
//   import { live } from "/hookwire-sse.js";
//   const board = live("board", (state) => render(state));
//   // board.state, board.version, board.close()

const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

// Every key is plain data, as in the Rust client: `out[k] = v` would run the `__proto__`
// setter (the key silently vanishes and the object's prototype changes), and `base[k]` would
// read inherited members such as `constructor`.
function setKey(o, k, v) {
  Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
}

/** Deep merge: objects merge, null deletes, everything else replaces. */
export function patch(original, p) {
  if (p === null || p === undefined || typeof p !== "object" || Array.isArray(p)) {
    return p === null || p === undefined ? original : p;
  }
  if (Object.keys(p).length === 0) return original;
  const base = original !== null && typeof original === "object" && !Array.isArray(original) ? original : {};
  const out = { ...base };
  for (const [k, v] of Object.entries(p)) {
    if (v === null || v === undefined) delete out[k];
    else if (typeof v === "object" && !Array.isArray(v)) setKey(out, k, patch(own(base, k) ? base[k] : undefined, v));
    else setKey(out, k, v);
  }
  return out;
}

function versionKey(k) {
  return /^[0-9]{1,15}$/.test(k) ? Number(k) : null;
}

/**
 * Applies a patch message to the cached state.
 * Returns {ok: true, state} or {ok: false, reason: "stale" | "behind"}.
 */
export function applyPatchMessage(msg, cached) {
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) return { ok: false, reason: "behind" };
  if (msg._resync === true) return { ok: false, reason: "behind" };
  const versions = [];
  for (const [k, p] of Object.entries(msg)) {
    const v = versionKey(k);
    if (v === null) continue;
    if (p !== null && (typeof p !== "object" || Array.isArray(p))) return { ok: false, reason: "behind" };
    versions.push([v, p]);
  }
  const hasBase = cached !== null && cached !== undefined;
  if (versions.length === 0) return { ok: false, reason: hasBase ? "stale" : "behind" };
  versions.sort((a, b) => a[0] - b[0]);
  const maxV = versions[versions.length - 1][0];
  const cachedV = hasBase && Number.isInteger(cached._v) ? cached._v : null;
  if (msg._overlay === true) {
    if (!hasBase || cachedV === null) return { ok: false, reason: "behind" };
    if (maxV < cachedV) return { ok: false, reason: "stale" };
    if (maxV > cachedV) return { ok: false, reason: "behind" };
    let s = cached;
    for (const [, p] of versions) s = patch(s, p);
    return { ok: true, state: { ...s, _v: cachedV } };
  }
  const watermark = cachedV === null ? -1 : cachedV;
  if (hasBase && maxV <= watermark) return { ok: false, reason: "stale" };
  let expected = watermark + 1;
  let s = hasBase ? cached : {};
  for (const [v, p] of versions) {
    if (v < expected) continue;
    if (v !== expected) return { ok: false, reason: "behind" };
    s = { ...patch(s, p), _v: v };
    expected += 1;
  }
  return { ok: true, state: s };
}

/**
 * Follows one stream. `onState(state)` runs after every change.
 * Options: base ("" = same origin), eventsUrl, stateUrl, onStatus(text), maxBackoffMs.
 */
export class LiveState {
  constructor(stream, onState, options = {}) {
    const base = options.base ?? "";
    this.eventsUrl = options.eventsUrl ?? `${base}/events/${encodeURIComponent(stream)}`;
    this.stateUrl = options.stateUrl ?? `${base}/state/${encodeURIComponent(stream)}`;
    this.onState = onState;
    this.onStatus = options.onStatus ?? (() => {});
    this.maxBackoffMs = options.maxBackoffMs ?? 30000;
    this.state = null;
    this.resyncs = 0;
    this.snapshots = 0;
    this.applied = 0;
    this._es = null;
    this._attempt = 0;
    this._refetching = null;
    this._buffer = [];
    this._closed = false;
    this._timer = null;
    this._open();
  }

  get version() {
    return this.state && Number.isInteger(this.state._v) ? this.state._v : null;
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._es) this._es.close();
  }

  _open() {
    if (this._closed) return;
    const v = this.version;
    const sep = this.eventsUrl.includes("?") ? "&" : "?";
    const url = v === null ? this.eventsUrl : `${this.eventsUrl}${sep}last_event_id=${v}`;
    const es = new EventSource(url);
    this._es = es;
    es.addEventListener("open", () => {
      this._attempt = 0;
      this.onStatus("open");
    });
    es.addEventListener("snapshot", (e) => {
      let s;
      try { s = JSON.parse(e.data); } catch { return this._refetch(); }
      this._buffer = [];
      this.snapshots += 1;
      this._set(s);
    });
    es.addEventListener("patch", (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return this._refetch(); }
      if (this._refetching) { this._buffer.push(msg); return; }
      this._apply(msg);
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (non-200 or bad content type): reconnect ourselves with
        // exponential backoff and full jitter, resuming from our version.
        es.close();
        const cap = Math.min(this.maxBackoffMs, 500 * 2 ** Math.min(this._attempt, 10));
        this._attempt += 1;
        this.onStatus("reconnecting");
        this._timer = setTimeout(() => this._open(), Math.random() * cap);
      } else {
        this.onStatus("connecting");
      }
    });
  }

  _apply(msg) {
    const r = applyPatchMessage(msg, this.state);
    if (r.ok) { this.applied += 1; this._set(r.state); }
    else if (r.reason === "behind") this._refetch();
  }

  _set(state) {
    this.state = state;
    try { this.onState(state); } catch (err) { console.error("hookwire-sse onState", err); }
  }

  _refetch() {
    if (this._refetching) return this._refetching;
    this.resyncs += 1;
    this._buffer = [];
    this._refetching = (async () => {
      for (let attempt = 0; !this._closed; attempt++) {
        try {
          const r = await fetch(this.stateUrl, { cache: "no-store", credentials: "same-origin" });
          if (r.ok) {
            const s = await r.json();
            const pending = this._buffer;
            this._buffer = [];
            this._refetching = null;
            this._set(s);
            for (const m of pending) {
              const res = applyPatchMessage(m, this.state);
              if (res.ok) { this.applied += 1; this._set(res.state); }
            }
            return;
          }
        } catch { /* retry below */ }
        await new Promise((res) => setTimeout(res, Math.random() * Math.min(this.maxBackoffMs, 250 * 2 ** Math.min(attempt, 10))));
      }
      this._refetching = null;
    })();
    return this._refetching;
  }
}

/** Shorthand for `new LiveState(stream, onState, options)`. */
export function live(stream, onState, options) {
  return new LiveState(stream, onState, options);
}
