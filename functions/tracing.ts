import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * The Powertools Tracer of the admin, refresh and delegated functions: a subsegment per invocation with the cold
 * start annotation and errors, and the Entra requests (Powertools captures `fetch`). AWS calls are not captured:
 * the broker's AWS clients (functions/aws-json.ts) are not SDK clients. The token function has no Tracer at all:
 * with aws-xray-sdk-core and cls-hooked it is about 20 ms of module load and adds async-hook work to every hit;
 * Lambda's active tracing still records its invocations (README, "Performance"). Off outside Lambda or with
 * POWERTOOLS_TRACE_ENABLED=false.
 */
export function createTracer(): Tracer {
  return new Tracer({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'token-broker' });
}
