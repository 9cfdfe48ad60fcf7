// IN/OUT argument structures: read from the guest, worked on, written back
// whole (the hypercalls whose structs carry both the request and its
// answer: event channels, grant tables). Inputs: guest pointers (a bad one
// is a GuestFault, which dispatch turns into -EFAULT).

import type { HypercallContext } from './context.js';

/** Reads the struct at `arg`, runs `f` on its view, writes it back; returns what `f` returns. */
export function inOut<T extends { view: DataView }, R>(ctx: HypercallContext, arg: bigint, size: number, over: (b: ArrayBufferLike) => T, f: (s: T) => R): R {
  const bytes = ctx.guest.read(arg, size);
  const r = f(over(bytes.buffer));
  ctx.guest.write(arg, bytes);
  return r;
}
