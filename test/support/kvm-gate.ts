// KVM tests run wherever /dev/kvm exists and fail loudly if it cannot be
// opened there; they skip, saying why, only on hosts without /dev/kvm.
// Tests of guests (the hypervisor core running real guest code) run on KVM
// where it exists and on the software engine everywhere else.
import { existsSync } from 'node:fs';

export const HAVE_KVM = existsSync('/dev/kvm');
/** The engine the guest tests run on here. */
export const GUEST_ENGINE: 'kvm' | 'soft' = HAVE_KVM ? 'kvm' : 'soft';
if (!HAVE_KVM) console.warn('SKIP: /dev/kvm does not exist on this host: the KVM engine tests are skipped; the guest tests run on the software engine');
