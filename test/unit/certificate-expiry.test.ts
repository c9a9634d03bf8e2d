import type { Logger } from '@aws-lambda-powertools/logger';
import { certificateExpiries } from '../../lib/certificate-expiry';
import { ScheduledRefresh } from '../../lib/scheduled-refresh';
import { ManualClock } from '../fixtures/clock';
import {
  InMemoryServiceRegistry,
  InMemoryTokenCache,
  serviceRecord,
  silentLogger,
} from '../fixtures/in-memory';

/**
 * The certificate-expiry gauge (CertificateDaysToExpiry) the scheduled refresh emits for the alarm of
 * infra/token-broker/monitoring.ts: whole days left per active service with a certificate, at a manual clock.
 */
const DAY = 24 * 60 * 60 * 1000;
const NOW = Date.UTC(2031, 4, 6, 12, 0, 0);
const withCertificate = (name: string, notAfter: string, overrides = {}) =>
  serviceRecord(name, {
    config: {
      ...serviceRecord(name).config,
      credential_type: 'certificate',
    },
    certificate: { pem: '-----BEGIN CERTIFICATE-----', thumbprintSha256: `thumb-${name}`, notAfter },
    ...overrides,
  });

describe('certificateExpiries', () => {
  it('gives the whole days left until certificate_not_after, closest to expiry first', () => {
    const services = [
      withCertificate('later', new Date(NOW + 90 * DAY).toISOString()),
      withCertificate('soon', new Date(NOW + 29 * DAY + 23 * 60 * 60 * 1000).toISOString()),
    ];

    expect(certificateExpiries(services, NOW)).toEqual([
      { service: 'soon', notAfter: new Date(NOW + 29 * DAY + 23 * 3_600_000).toISOString(), daysLeft: 29 },
      { service: 'later', notAfter: new Date(NOW + 90 * DAY).toISOString(), daysLeft: 90 },
    ]);
  });

  it('counts an expired certificate as negative days', () => {
    const expired = withCertificate('expired', new Date(NOW - 2 * DAY).toISOString());

    expect(certificateExpiries([expired], NOW).map((e) => e.daysLeft)).toEqual([-2]);
  });

  it('leaves out inactive services, services without a certificate and dates that do not parse', () => {
    const services = [
      withCertificate('inactive', new Date(NOW + DAY).toISOString(), { is_active: false }),
      serviceRecord('secret-only'),
      withCertificate('garbled', 'not a date'),
    ];

    expect(certificateExpiries(services, NOW)).toEqual([]);
  });
});

describe('the scheduled refresh reports certificates', () => {
  function setup() {
    const clock = new ManualClock(NOW);
    const registry = new InMemoryServiceRegistry();
    const gauge: number[] = [];
    const warnings: unknown[] = [];
    const logger = silentLogger();
    jest.spyOn(logger, 'warn').mockImplementation((...args: unknown[]) => {
      warnings.push(args);
    });
    const scheduled = new ScheduledRefresh({
      // No token is cached in these tests, so nothing is due: only the certificates matter.
      flow: {
        usableService: async (name) => registry.services.get(name) ?? serviceRecord(name),
        refreshScheduled: async () => 'fresh',
      },
      registry,
      cache: new InMemoryTokenCache(clock.now),
      logger: logger as Logger,
      horizonMs: 6 * 60_000,
      usedWithinMs: 60 * 60_000,
      retryBudgetMs: 12_000,
      certificates: { certificateDaysToExpiry: (days) => gauge.push(days) },
      now: clock.now,
    });
    return { clock, registry, gauge, warnings, scheduled };
  }

  it('emits the days left of every active certificate once per run, at the time of the run', async () => {
    const { clock, registry, gauge, scheduled } = setup();
    registry.services.set('a', withCertificate('a', new Date(NOW + 40 * DAY).toISOString()));
    registry.services.set('b', withCertificate('b', new Date(NOW + 100 * DAY).toISOString()));
    registry.services.set('c', serviceRecord('c'));

    await scheduled.run(NOW + 60_000);
    clock.advance(11 * DAY);
    await scheduled.run(clock.now() + 60_000);

    expect(gauge).toEqual([40, 100, 29, 89]);
  });

  it('names the services whose certificate expires within 30 days in a warning, with public facts only', async () => {
    const { registry, warnings, scheduled } = setup();
    const notAfter = new Date(NOW + 12 * DAY).toISOString();
    registry.services.set('near', withCertificate('near', notAfter));
    registry.services.set('far', withCertificate('far', new Date(NOW + 200 * DAY).toISOString()));

    await scheduled.run(NOW + 60_000);

    expect(warnings).toContainEqual([
      'certificates near expiry',
      { certificates: [{ serviceName: 'near', notAfter, daysLeft: 12 }] },
    ]);
    expect(JSON.stringify(warnings)).not.toContain('BEGIN CERTIFICATE');
  });

  it('emits nothing and warns of nothing without certificates', async () => {
    const { registry, gauge, warnings, scheduled } = setup();
    registry.services.set('plain', serviceRecord('plain'));

    await scheduled.run(NOW + 60_000);

    expect(gauge).toEqual([]);
    expect(warnings.filter((w) => JSON.stringify(w).includes('certificates'))).toEqual([]);
  });
});
