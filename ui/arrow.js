// A small reader of Arrow IPC streams (the API's `format=arrow`): enough for th1/th2 rows —
// ints, floats, bools, strings (Utf8, LargeUtf8, Utf8View) and (nested) lists, no compression,
// no dictionaries. Rows come out like the JSON rows; bin lists are Float64Array views (no copy).
// Format: https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc

/** A flatbuffer table at `pos` of DataView `dv`. */
class Table {
  constructor(dv, pos) {
    this.dv = dv;
    this.pos = pos;
    this.vt = pos - dv.getInt32(pos, true);
    this.vtlen = dv.getUint16(this.vt, true);
  }
  off(i) {
    const o = 4 + 2 * i;
    return o < this.vtlen ? this.dv.getUint16(this.vt + o, true) : 0;
  }
  u8(i, d = 0) { const o = this.off(i); return o ? this.dv.getUint8(this.pos + o) : d; }
  i16(i, d = 0) { const o = this.off(i); return o ? this.dv.getInt16(this.pos + o, true) : d; }
  i32(i, d = 0) { const o = this.off(i); return o ? this.dv.getInt32(this.pos + o, true) : d; }
  i64(i, d = 0) { const o = this.off(i); return o ? Number(this.dv.getBigInt64(this.pos + o, true)) : d; }
  ref(i) { const o = this.off(i); return o ? this.pos + o + this.dv.getUint32(this.pos + o, true) : 0; }
  table(i) { const p = this.ref(i); return p ? new Table(this.dv, p) : null; }
  str(i) {
    const p = this.ref(i);
    if (!p) return null;
    const n = this.dv.getUint32(p, true);
    return new TextDecoder().decode(new Uint8Array(this.dv.buffer, this.dv.byteOffset + p + 4, n));
  }
  /** Vector at field i: [start of elements, length]. */
  vec(i) { const p = this.ref(i); return p ? [p + 4, this.dv.getUint32(p, true)] : [0, 0]; }
  tables(i) {
    const [s, n] = this.vec(i);
    const out = [];
    for (let k = 0; k < n; k++) { const p = s + 4 * k; out.push(new Table(this.dv, p + this.dv.getUint32(p, true))); }
    return out;
  }
}

// Type union tags (Schema.fbs).
const INT = 2, FLOAT = 3, UTF8 = 5, BOOL = 6, LIST = 12, LARGE_UTF8 = 20, LARGE_LIST = 21, UTF8_VIEW = 24;

function field(t) {
  const type = t.table(3);
  return {
    name: t.str(0),
    tag: t.u8(2),
    bits: type ? type.i32(0) : 0,
    signed: type ? !!type.u8(1) : false,
    precision: type ? type.i16(0) : 0,
    children: t.tables(5).map(field),
  };
}

/** Decodes an Arrow IPC stream into row objects. */
export function decodeArrow(buf) {
  const dv = new DataView(buf);
  const rows = [];
  let schema = null;
  let pos = 0;
  while (pos + 8 <= buf.byteLength) {
    let len = dv.getInt32(pos, true);
    pos += 4;
    if (len === -1) { len = dv.getInt32(pos, true); pos += 4; }
    if (len === 0) break;
    const meta = new DataView(buf, pos, len);
    const msg = new Table(meta, meta.getUint32(0, true));
    const kind = msg.u8(1);
    const header = msg.table(2);
    const bodyLen = msg.i64(3);
    const body = pos + len;
    if (kind === 1) schema = header.tables(1).map(field);
    else if (kind === 3) batch(dv, header, body, schema, rows);
    else if (kind === 2) throw new Error("Arrow dictionaries are not supported");
    pos = body + bodyLen;
  }
  return rows;
}

function batch(dv, rb, body, schema, rows) {
  if (rb.table(3)) throw new Error("compressed Arrow batches are not supported");
  const n = rb.i64(0);
  const [ns, nn] = rb.vec(1);
  const [bs, bn] = rb.vec(2);
  const nodes = [];
  for (let k = 0; k < nn; k++) nodes.push(Number(rb.dv.getBigInt64(ns + 16 * k, true)));
  const buffers = [];
  for (let k = 0; k < bn; k++) buffers.push([body + Number(rb.dv.getBigInt64(bs + 16 * k, true)), Number(rb.dv.getBigInt64(bs + 16 * k + 8, true))]);
  const variadic = [];
  { const [vs, vn] = rb.vec(4); for (let k = 0; k < vn; k++) variadic.push(Number(rb.dv.getBigInt64(vs + 8 * k, true))); }
  const st = { node: 0, buf: 0, variadic: 0 };
  const cols = schema.map((f) => [f.name, column(dv, f, nodes, buffers, variadic, st)]);
  for (let i = 0; i < n; i++) {
    const row = {};
    for (const [name, get] of cols) row[name] = get(i);
    rows.push(row);
  }
}

function f64(dv, [off, len]) {
  const abs = dv.byteOffset + off;
  if (abs % 8 === 0) return new Float64Array(dv.buffer, abs, len >> 3);
  return new Float64Array(dv.buffer.slice(abs, abs + len));
}

/** A getter i -> value for one column (consumes its nodes and buffers in order). */
function column(dv, f, nodes, buffers, variadic, st) {
  st.node++; // (length, null count): the batch length and the validity bitmap say it all
  const [vOff, vLen] = buffers[st.buf++];
  const valid = vLen ? (i) => (dv.getUint8(vOff + (i >> 3)) >> (i & 7)) & 1 : () => 1;
  const nullable = (g) => (i) => (valid(i) ? g(i) : null);
  switch (f.tag) {
    case INT: {
      const [o] = buffers[st.buf++];
      const b = f.bits;
      if (b === 64) return nullable((i) => Number(f.signed ? dv.getBigInt64(o + 8 * i, true) : dv.getBigUint64(o + 8 * i, true)));
      if (b === 32) return nullable((i) => (f.signed ? dv.getInt32(o + 4 * i, true) : dv.getUint32(o + 4 * i, true)));
      if (b === 16) return nullable((i) => (f.signed ? dv.getInt16(o + 2 * i, true) : dv.getUint16(o + 2 * i, true)));
      return nullable((i) => (f.signed ? dv.getInt8(o + i) : dv.getUint8(o + i)));
    }
    case FLOAT: {
      const [o] = buffers[st.buf++];
      if (f.precision === 2) return nullable((i) => dv.getFloat64(o + 8 * i, true));
      if (f.precision === 1) return nullable((i) => dv.getFloat32(o + 4 * i, true));
      throw new Error("half floats are not supported");
    }
    case BOOL: {
      const [o] = buffers[st.buf++];
      return nullable((i) => !!((dv.getUint8(o + (i >> 3)) >> (i & 7)) & 1));
    }
    case UTF8:
    case LARGE_UTF8: {
      const [o] = buffers[st.buf++];
      const [d] = buffers[st.buf++];
      const big = f.tag === LARGE_UTF8;
      const at = (i) => (big ? Number(dv.getBigInt64(o + 8 * i, true)) : dv.getInt32(o + 4 * i, true));
      const td = new TextDecoder();
      return nullable((i) => td.decode(new Uint8Array(dv.buffer, dv.byteOffset + d + at(i), at(i + 1) - at(i))));
    }
    case UTF8_VIEW: {
      const [o] = buffers[st.buf++];
      const count = variadic[st.variadic++] || 0;
      const data = [];
      for (let k = 0; k < count; k++) data.push(buffers[st.buf++][0]);
      const td = new TextDecoder();
      return nullable((i) => {
        const p = o + 16 * i;
        const n = dv.getInt32(p, true);
        if (n <= 12) return td.decode(new Uint8Array(dv.buffer, dv.byteOffset + p + 4, n));
        const b = dv.getInt32(p + 8, true), off = dv.getInt32(p + 12, true);
        return td.decode(new Uint8Array(dv.buffer, dv.byteOffset + data[b] + off, n));
      });
    }
    case LIST:
    case LARGE_LIST: {
      const [o] = buffers[st.buf++];
      const big = f.tag === LARGE_LIST;
      const at = (i) => (big ? Number(dv.getBigInt64(o + 8 * i, true)) : dv.getInt32(o + 4 * i, true));
      const child = f.children[0];
      if (child.tag === FLOAT && child.precision === 2) {
        // Bin lists: one typed view over all values, sliced per row.
        nodes[st.node++];
        st.buf++; // child validity (bins are never null)
        const values = f64(dv, buffers[st.buf++]);
        return nullable((i) => values.subarray(at(i), at(i + 1)));
      }
      const get = column(dv, child, nodes, buffers, variadic, st);
      return nullable((i) => {
        const out = [];
        for (let k = at(i); k < at(i + 1); k++) out.push(get(k));
        return out;
      });
    }
    default:
      throw new Error(`Arrow type ${f.tag} of column ${f.name} is not supported`);
  }
}
