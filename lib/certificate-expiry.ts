import type { ServiceRecord } from './service-config';

const DAY_MS = 24 * 60 * 60 * 1000;

/** One service's certificate and how long it has left. */
export interface CertificateExpiry {
  service: string;
  /** `certificate_not_after`, ISO 8601. */
  notAfter: string;
  /** Whole days until `notAfter` (rounded down; negative once expired). */
  daysLeft: number;
}

/** Where the scheduled refresh reports each certificate's days left (CloudWatch gauge CertificateDaysToExpiry). */
export interface CertificateExpirySink {
  certificateDaysToExpiry(daysLeft: number): void;
}

/**
 * The certificates of the active services that have one (`certificate.not_after`), with their days left at `now`,
 * the closest to expiry first. A stored date that does not parse is left out rather than reported as 0 days (that
 * would page someone for a record the admin API could not have written).
 */
export function certificateExpiries(services: readonly ServiceRecord[], now: number): CertificateExpiry[] {
  const expiries: CertificateExpiry[] = [];
  for (const service of services) {
    const notAfter = service.certificate?.notAfter;
    if (!service.is_active || notAfter === undefined) continue;
    const at = Date.parse(notAfter);
    if (Number.isNaN(at)) continue;
    expiries.push({ service: service.name, notAfter, daysLeft: Math.floor((at - now) / DAY_MS) });
  }
  return expiries.sort((a, b) => a.daysLeft - b.daysLeft);
}
