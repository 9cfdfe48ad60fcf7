// Helpers shared by the generated ABI accessors (src/abi/generated/*.ts):
// bounds checks and C string access. Inputs are guest-controlled bytes, so
// every access is checked and strings are read without trusting a NUL.

/** Throws unless [base, base + size) lies inside the view. */
export function checkSpan(view: DataView, base: number, size: number, what: string): void {
  if (!Number.isInteger(base) || base < 0 || base + size > view.byteLength) {
    throw new RangeError(`${what}: ${size} bytes at offset ${base} do not fit in a ${view.byteLength}-byte view`);
  }
}

/** Returns i if it is a valid index below n, else throws. */
export function index(i: number, n: number): number {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`index ${i} is outside 0..${n - 1}`);
  return i;
}

/** Reads a Latin-1 string that ends at the first NUL or after `max` bytes. */
export function readCString(view: DataView, at: number, max: number): string {
  let s = '';
  for (let i = 0; i < max; i++) {
    const c = view.getUint8(at + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

/** Writes `s` NUL-terminated and zero-filled into `max` bytes; throws if it does not fit. */
export function writeCString(view: DataView, at: number, max: number, s: string, what: string): void {
  if (s.length >= max) throw new RangeError(`${what}: a ${s.length}-character string does not fit in ${max} bytes with its NUL`);
  for (let i = 0; i < max; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0;
    if (c > 0xff) throw new RangeError(`${what}: character ${JSON.stringify(s[i])} is not Latin-1`);
    view.setUint8(at + i, c);
  }
}
