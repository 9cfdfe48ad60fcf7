// The Linux boot benchmark's harness (src/bench/linux.ts) on stand-in
// "systems" (small node scripts), so that what it reports is checked on
// any host: the first line of /init and the poweroff after `exit` is
// typed, a boot that never reaches /init, one that dies first, and the
// table with its target. No timing is asserted.

import { describe, expect, it } from 'vitest';
import { formatLinuxBench, linuxInputs, timeBoot, type LinuxBenchResult } from '../../src/bench/linux.js';
import { INIT_BANNER } from '../../src/linux/initramfs.js';

const node = process.execPath;
/** A system that boots: some console text, the banner, then a shell that ends on `exit` (the process exits 0). */
const BOOTS = `
process.stdout.write('[    0.000000] Linux version 6.1\\n');
setTimeout(() => {
  process.stdout.write('${INIT_BANNER}\\n/ # ');
  let typed = '';
  process.stdin.on('data', (b) => { typed += b; if (typed.includes('exit\\n')) { process.stdout.write('reboot: Power down\\n'); process.exit(0); } });
}, 20);
`;

describe('timeBoot', () => {
  it('times the first line of /init, types exit, and times the poweroff', async () => {
    const t = await timeBoot(node, ['-e', BOOTS], 30_000);
    expect(t.problem).toBeUndefined();
    expect(t.firstLineMs).toBeGreaterThan(0);
    expect(t.poweroffMs).toBeGreaterThanOrEqual(t.firstLineMs!);
  });

  it('kills a boot that does not reach /init within the limit, and says so', async () => {
    const t = await timeBoot(node, ['-e', 'process.stdout.write("booting\\n"); setInterval(() => {}, 1000);'], 300);
    expect(t.firstLineMs).toBeUndefined();
    expect(t.poweroffMs).toBeUndefined();
    expect(t.problem).toBe('no first line of /init within 0.3 s');
  });

  it('reports a system that ends before /init, with its last words', async () => {
    const t = await timeBoot(node, ['-e', 'console.error("paravane: domain 1 (linux) crashed: triple fault"); process.exit(3);'], 30_000);
    expect(t.firstLineMs).toBeUndefined();
    expect(t.problem).toMatch(/ended \(status 3\) before \/init's first line: paravane: domain 1 \(linux\) crashed: triple fault/);
  });

  it('does not count a crash after the first line as a poweroff', async () => {
    const crashes = BOOTS.replace("process.exit(0)", "console.error('paravane: domain 1 (linux) crashed: oops'); process.exit(3)");
    const t = await timeBoot(node, ['-e', crashes], 30_000);
    expect(t.firstLineMs).toBeGreaterThan(0);
    expect(t.poweroffMs).toBeUndefined();
    expect(t.problem).toMatch(/ended \(status 3\) after \/init's first line, not by poweroff: paravane: domain 1 \(linux\) crashed: oops/);
  });

  it('says what cannot be started', async () => {
    const t = await timeBoot('/nonexistent/qemu', [], 30_000);
    expect(t.problem).toMatch(/could not be started/);
  });
});

describe('the Linux benchmark\'s inputs and table', () => {
  it('asks for scripts/fetch-linux.sh when the kernel or initramfs is missing', () => {
    expect(() => linuxInputs({ kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd' })).toThrow(/run scripts\/fetch-linux\.sh/);
  });

  it('prints each system, the ratio with its target, or why it was not measured', () => {
    const r: LinuxBenchResult = {
      kernel: '/x/vmlinuz-6.1.0-50-amd64', initrd: '/x/initramfs.cpio.gz', memoryMiB: 256, limitSeconds: 60,
      systems: [
        { system: 'paravane (PV domU)', command: 'node run', boots: [{ firstLineMs: 4000, poweroffMs: 4500, stderr: '' }], firstLineMs: 4000, poweroffMs: 4500 },
        { system: 'QEMU TCG', command: 'qemu', boots: [{ firstLineMs: 5000, poweroffMs: 5100, stderr: '' }], firstLineMs: 5000, poweroffMs: 5100 },
        { system: 'QEMU KVM', command: 'qemu', boots: [{ problem: 'no first line of /init within 60 s', stderr: '' }] },
      ],
      ratioToTcg: 0.8,
      paravaneStats: 'paravane: domain 1 (linux) ran 4.5 s\n  hypercalls:\n    mmu_update 50000',
    };
    const text = formatLinuxBench(r);
    expect(text).toMatch(/paravane \(PV domU\) +4\.00 s +4\.50 s {2}1/);
    expect(text).toMatch(/QEMU KVM +- +- {2}1 {2}\(no first line of \/init within 60 s\)/);
    expect(text).toContain("paravane / QEMU TCG, to init's first line: 0.80 (target <= 1.0)");
    expect(text).toContain('    mmu_update 50000');
    expect(formatLinuxBench({ ...r, ratioToTcg: undefined, systems: [{ ...r.systems[0]!, skipped: 'no /dev/kvm' }, r.systems[1]!] }))
      .toMatch(/paravane \(PV domU\) +not run: no \/dev\/kvm[\s\S]*not measured \(both must complete\) \(target <= 1\.0\)/);
  });
});
