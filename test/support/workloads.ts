// What the guest kit's workloads print in every mode (PV under paravane,
// plain kernels under QEMU): the answers tests compare across modes.

/** compute's first line: the sieve's prime count below 2,000,000 and its checksum (computed in JS). */
export const COMPUTE_ANSWER = 'compute: primes below 2000000: 148933, checksum 0x28eab8f4a96ef7be';

/** nano's check that every divide error and int3 (2000 of each) reached the kernel's handler. */
export const NANO_HANDLED = 'nano: 4000 faults handled';

/** ptemod's check: 17 reads of the 512 slots (8 rounds of single and of batched updates, then demand faults), each 256 x 1 + 256 x 2. */
export const PTEMOD_CHECKSUM = 'ptemod: checksum 13056';

/** Each of conio's 64 lines: 63 letters of the alphabet, round and round. */
export const CONIO_LINE = 'abcdefghijklmnopqrstuvwxyz'.repeat(3).slice(0, 63);

/** aspace's check: 64 rounds reading 16 pages through the window, page k of round r being (k + r) mod 16 + 1, weighted by k + 1. */
export const ASPACE_CHECKSUM = 'aspace: checksum 73984';

/** mmap's check: 16 rounds of reading 16, 128 and 512 mapped pages, page k holding (k + 1) mod 256. */
export const MMAP_CHECKSUM = 'mmap: checksum 1178752';

/** ctxsw's check: 1000 switches alternating between windows reading 1..8 and 11..18. */
export const CTXSW_CHECKSUM = 'ctxsw: checksum 76000';

/** ticks's result: counted, expected, the period in us, the milliseconds and the ticks lost. */
export const TICKS_LINE = /ticks: (\d+) of (\d+) ticks of 1000 us in (\d+) ms, lost (\d+)/;
