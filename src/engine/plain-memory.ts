// Machine memory in ordinary ArrayBuffers: for engines that need no shared
// mapping (the software engine to come) and for tests of the hypervisor
// core that run without /dev/kvm.

import { usage } from './errors.js';
import { PAGE_SIZE, type MachineMemory, type MemoryChunk } from './types.js';

export function createPlainMemory(size: number, chunkSize = 1 << 30): MachineMemory {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE) throw usage(`memory size ${size} is not a positive multiple of ${PAGE_SIZE}`);
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % PAGE_SIZE) throw usage(`chunk size ${chunkSize} is not a positive multiple of ${PAGE_SIZE}`);
  const chunks: MemoryChunk[] = [];
  for (let base = 0; base < size; base += chunkSize) {
    const buffer = new ArrayBuffer(Math.min(chunkSize, size - base));
    chunks.push({ base, size: buffer.byteLength, buffer, bytes: new Uint8Array(buffer), view: new DataView(buffer) });
  }
  return {
    size, chunkSize, chunks,
    chunkAt(addr: number): MemoryChunk {
      const c = chunks[Math.floor(addr / chunkSize)];
      if (!c || addr < 0 || addr >= size) throw usage(`machine address ${addr} is outside the ${size}-byte memory`);
      return c;
    },
    discard(offset: number, length: number): void {
      for (let at = offset; at < offset + length;) {
        const c = this.chunkAt(at);
        const end = Math.min(offset + length, c.base + c.size);
        c.bytes.fill(0, at - c.base, end - c.base);
        at = end;
      }
    },
    forgetTranslations() { /* plain memory has no VM caching translations to it */ },
    close() { /* garbage-collected */ },
  };
}
