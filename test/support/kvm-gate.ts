// KVM tests run wherever /dev/kvm exists and fail loudly if it cannot be
// opened there; they skip, saying why, only on hosts without /dev/kvm.
import { existsSync } from 'node:fs';

export const HAVE_KVM = existsSync('/dev/kvm');
if (!HAVE_KVM) console.warn('SKIP: /dev/kvm does not exist on this host: the KVM engine tests are skipped');
