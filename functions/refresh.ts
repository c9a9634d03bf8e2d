import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { ScheduledRunResult } from '../lib/scheduled-refresh';
import { createRuntime } from './runtime';
import { createTracer } from './tracing';

const runtime = createRuntime();

/** Refresh tokens reaching their refresh point before the next run (EventBridge schedule) plus slack. */
const HORIZON_MS = runtime.env.TOKEN_BROKER_REFRESH_HORIZON_MS;
/** Only tokens served within this window count as in use. */
const USED_WITHIN_MS = runtime.env.TOKEN_BROKER_REFRESH_USED_WITHIN_MS;

/** Time kept back from the Lambda timeout for the last refreshes to finish and the result to be logged. */
const SAFETY_MS = 5_000;
/** The schedule's interval (the horizon is the interval plus a minute, infra/): a run ends before the next starts. */
const INTERVAL_MS = Math.max(60_000, HORIZON_MS - 60_000);

const scheduled = runtime.scheduledRefresh({ horizonMs: HORIZON_MS, usedWithinMs: USED_WITHIN_MS });

/**
 * Scheduled refresh (EventBridge): refreshes the recently used cached tokens that are near their refresh point,
 * most urgent first and a few at a time (lib/scheduled-refresh.ts), and stops starting refreshes before the
 * function's timeout and before the next run. One service's failure does not stop the rest.
 */
async function refreshDueTokens(_event: unknown, context: Context): Promise<ScheduledRunResult> {
  const started = Date.now();
  const deadline = started + Math.min(context.getRemainingTimeInMillis(), INTERVAL_MS) - SAFETY_MS;
  const result = await scheduled.run(deadline);
  runtime.logger.info('scheduled refresh done', { ...result });
  return result;
}

export const handler = middy()
  .use(captureLambdaHandler(createTracer(), { captureResponse: false }))
  .use(injectLambdaContext(runtime.logger, { resetKeys: true }))
  .use(logMetrics(runtime.metrics))
  .handler(refreshDueTokens);
