import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { DeadlineExceededError } from '../lib/errors';

/** API Gateway's integration timeout for REST APIs: past it the caller gets API Gateway's bare 504. */
export const API_GATEWAY_LIMIT_MS = 29_000;

/**
 * Time kept between the end of a request's budget and the first hard limit (Lambda's timeout or API Gateway's),
 * for lib to finish what the budget cut short (degrade to memory, roll back) and for the answer to travel.
 */
export const ANSWER_MARGIN_MS = 1500;

/**
 * middy's early timeout, the backstop: if the handler has not answered this long before Lambda's timeout, middy
 * answers for it (504 in the API's error shape) and aborts the handler's signal.
 */
export const BACKSTOP_MARGIN_MS = 300;

/** The time a request may use, as data for lib: a deadline (epoch ms) and a signal that aborts at it. */
export interface RequestBudget {
  deadline: number;
  signal: AbortSignal;
}

/**
 * The request's budget: whichever comes first of the Lambda context's remaining time and, for an API Gateway
 * event, API Gateway's 29 s counted from when it received the request; less {@link ANSWER_MARGIN_MS}. Local mode
 * builds the same event and context (local/apigw-event.ts), so it gets the equivalent deadline.
 */
export function requestBudget(
  event: Partial<Pick<APIGatewayProxyEvent, 'requestContext'>> | undefined,
  context: Pick<Context, 'getRemainingTimeInMillis'> | undefined,
  now = Date.now(),
): RequestBudget {
  const limits = [now + (context?.getRemainingTimeInMillis?.() ?? API_GATEWAY_LIMIT_MS)];
  const receivedAt = event?.requestContext?.requestTimeEpoch;
  if (receivedAt !== undefined) limits.push(receivedAt + API_GATEWAY_LIMIT_MS);
  const deadline = Math.min(...limits) - ANSWER_MARGIN_MS;
  return { deadline, signal: AbortSignal.timeout(Math.max(0, deadline - now)) };
}

/**
 * middy's plugin options for every HTTP handler: answer with a 504 in the API's shape before Lambda's timeout,
 * never with Lambda's own timeout (which API Gateway turns into a bare 502).
 */
export const answerBeforeLambdaTimeout = {
  timeoutEarlyInMillis: BACKSTOP_MARGIN_MS,
  timeoutEarlyResponse: (): never => {
    throw new DeadlineExceededError('the request did not complete in time; retry later');
  },
};
