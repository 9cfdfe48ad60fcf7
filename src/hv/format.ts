// Formatting shared by the core's messages (crash reasons, refusals).
// Inputs: numbers from anywhere; nothing is trusted or kept.

/** `0x…` for a number or a bigint, as messages print addresses and frames. */
export const hex = (v: number | bigint): string => `0x${v.toString(16)}`;
