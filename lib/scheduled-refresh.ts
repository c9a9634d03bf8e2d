import type { Logger } from '@aws-lambda-powertools/logger';
import { type CertificateExpirySink, certificateExpiries } from './certificate-expiry';
import type { ClientCredentialsFlow, ScheduledOutcome } from './client-credentials-flow';
import { CERTIFICATE_EXPIRY_WARNING_DAYS } from './metrics';
import { allowsClientCredentials, type ServiceRecord, scopesOf } from './service-config';
import type { ServiceRegistry } from './service-registry';
import type { CacheKey, TokenCache } from './token-cache';

/** A service's scopes as the scheduled refresh sees them: what to refresh, and why the rest is left alone. */
export interface ScheduledPlan {
  service: ServiceRecord;
  /** Keys to refresh, with their refresh points, the most urgent first. */
  due: Array<{ key: CacheKey; refreshAt: number }>;
  /** Outcomes of the scopes that are not due. */
  outcomes: Record<string, ScheduledOutcome>;
}

/** What one scheduled run did. */
export interface ScheduledRunResult {
  services: number;
  refreshed: number;
  failed: number;
  /** Due tokens the run had no time left for; the next run takes them first (they are then the most urgent). */
  skipped: number;
}

export interface ScheduledRefreshOptions {
  /** The flow whose lease, retries and conditional writes every refresh goes through. */
  flow: Pick<ClientCredentialsFlow, 'usableService' | 'refreshScheduled'>;
  registry: Pick<ServiceRegistry, 'list'>;
  /** The token cache itself, not degrading: with DynamoDB down there is nothing to schedule. */
  cache: Pick<TokenCache, 'lookup'>;
  logger: Logger;
  /** Tokens reaching their refresh point within this window are refreshed now. */
  horizonMs: number;
  /** Only tokens served within this window count as in use. */
  usedWithinMs: number;
  /** Entra time one refresh may take (the request retry budget). */
  retryBudgetMs: number;
  /** Receives the days left of every active service's certificate, once per run (the expiry alarm's gauge). */
  certificates?: CertificateExpirySink;
  /** Refreshes running at once; default 4. */
  concurrency?: number;
  now?: () => number;
}

/** Less than this left before the deadline: no new refresh is started. */
const MIN_REFRESH_TIME_MS = 1_000;

/**
 * The scheduled refresh (EventBridge, functions/refresh.ts): keeps the tokens callers use fresh, so that they
 * nearly always hit the cache, and lets unused tokens lapse. A token is due when a caller was served it within
 * `usedWithinMs` (a refresh does not count as use) and it reaches its refresh point within `horizonMs`. A run
 * refreshes the most urgent first, a few at a time, and starts nothing after its deadline, so that a slow Entra
 * cannot starve the end of the list and runs do not overlap; the lease keeps it from refreshing twice.
 */
export class ScheduledRefresh {
  private readonly options: ScheduledRefreshOptions;
  private readonly now: () => number;

  constructor(options: ScheduledRefreshOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** What is due for one service (NotFound, Inactive or GrantNotEnabled when it may not be refreshed). */
  async plan(name: string): Promise<ScheduledPlan> {
    const service = await this.options.flow.usableService(name);
    const found = await this.options.cache.lookup(name);
    const plan: ScheduledPlan = { service, due: [], outcomes: {} };
    for (const scope of scopesOf(service.config)) {
      const key: CacheKey = { service: name, version: service.version, scope };
      const cached = await found.get(key);
      const now = this.now();
      if (!cached) plan.outcomes[scope] = 'not-cached';
      else if ((cached.lastUsedAt ?? cached.acquiredAt) < now - this.options.usedWithinMs)
        plan.outcomes[scope] = 'unused';
      else if (cached.refreshAt > now + this.options.horizonMs) plan.outcomes[scope] = 'fresh';
      else plan.due.push({ key, refreshAt: cached.refreshAt });
    }
    plan.due.sort((a, b) => a.refreshAt - b.refreshAt);
    return plan;
  }

  /** Refreshes what is due for one service, one scope after another; the outcome of every scope. */
  async refreshService(name: string): Promise<Record<string, ScheduledOutcome>> {
    const plan = await this.plan(name);
    const outcomes = { ...plan.outcomes };
    for (const { key } of plan.due) {
      outcomes[key.scope] = await this.options.flow.refreshScheduled(
        plan.service,
        key,
        this.options.horizonMs,
      );
    }
    return outcomes;
  }

  /** One run over every active service, ending by `deadline` (epoch ms). */
  async run(deadline: number): Promise<ScheduledRunResult> {
    const { logger, horizonMs, retryBudgetMs } = this.options;
    const concurrency = this.options.concurrency ?? 4;
    const result: ScheduledRunResult = { services: 0, refreshed: 0, failed: 0, skipped: 0 };
    const listed = await this.options.registry.list();
    this.reportCertificates(listed);
    const services = listed.filter((s) => s.is_active && allowsClientCredentials(s.config));
    result.services = services.length;

    const due: Array<{ service: ServiceRecord; key: CacheKey; refreshAt: number }> = [];
    await bounded(services, concurrency, async (service) => {
      try {
        const plan = await this.plan(service.name);
        for (const entry of plan.due) due.push({ service: plan.service, ...entry });
      } catch (error) {
        result.failed++;
        logger.warn('scheduled refresh skipped a service', { serviceName: service.name, error });
      }
    });
    // Across services, the soonest refresh point first: what a run cannot reach is the least urgent.
    due.sort((a, b) => a.refreshAt - b.refreshAt);

    await bounded(due, concurrency, async ({ service, key }) => {
      const left = deadline - this.now();
      if (left < MIN_REFRESH_TIME_MS) {
        result.skipped++;
        return;
      }
      const budgetMs = Math.min(retryBudgetMs, left);
      const outcome = await this.options.flow.refreshScheduled(service, key, horizonMs, budgetMs);
      if (outcome === 'refreshed') result.refreshed++;
      if (outcome === 'failed') result.failed++;
    });
    if (result.skipped > 0) {
      logger.warn('scheduled refresh ran out of time', { skipped: result.skipped, deadline });
    }
    return result;
  }

  /** Every active service's certificate: its days left to the sink, and a warning naming those near expiry. */
  private reportCertificates(services: readonly ServiceRecord[]): void {
    const expiries = certificateExpiries(services, this.now());
    for (const { daysLeft } of expiries) this.options.certificates?.certificateDaysToExpiry(daysLeft);
    const near = expiries.filter((e) => e.daysLeft < CERTIFICATE_EXPIRY_WARNING_DAYS);
    if (near.length > 0) {
      // Public facts only (names and dates): which certificates to replace before the alarm's 30 days run out.
      this.options.logger.warn('certificates near expiry', {
        certificates: near.map((e) => ({
          serviceName: e.service,
          notAfter: e.notAfter,
          daysLeft: e.daysLeft,
        })),
      });
    }
  }
}

/** Runs `work` over `items`, at most `limit` at a time, in order of the items. */
async function bounded<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
