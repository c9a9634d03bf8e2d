import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { allowsClientCredentials } from '../lib/service-config';
import { createRuntime } from './runtime';

const runtime = createRuntime();

/** Refresh tokens reaching their refresh point before the next run (EventBridge schedule) plus slack. */
const HORIZON_MS = runtime.env.TOKEN_BROKER_REFRESH_HORIZON_MS;
/** Only tokens served within this window count as in use. */
const USED_WITHIN_MS = runtime.env.TOKEN_BROKER_REFRESH_USED_WITHIN_MS;

/**
 * Scheduled refresh (EventBridge): for every active service, refreshes its recently used cached tokens that are
 * near their refresh point, so callers nearly always hit the cache. One service's failure does not stop the rest.
 */
async function refreshDueTokens(): Promise<{ services: number; refreshed: number; failed: number }> {
  let refreshed = 0;
  let failed = 0;
  const services = await runtime.admin.list();
  for (const service of services) {
    if (!service.is_active || !allowsClientCredentials(service.config)) continue;
    try {
      const outcomes = await runtime.flow.refreshDue(service.name, HORIZON_MS, USED_WITHIN_MS);
      for (const outcome of Object.values(outcomes)) {
        if (outcome === 'refreshed') refreshed++;
        if (outcome === 'failed') failed++;
      }
    } catch (error) {
      failed++;
      runtime.logger.warn('scheduled refresh skipped a service', { serviceName: service.name, error });
    }
  }
  runtime.logger.info('scheduled refresh done', { services: services.length, refreshed, failed });
  return { services: services.length, refreshed, failed };
}

export const handler = middy()
  .use(captureLambdaHandler(runtime.tracer, { captureResponse: false }))
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(logMetrics(runtime.metrics))
  .handler(refreshDueTokens);
