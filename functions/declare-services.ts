import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { requestBudget } from './request-budget';
import { createRuntime } from './runtime';

const runtime = createRuntime();

/** What the Provider framework expects back from an onEvent handler. */
interface OnEventResponse {
  PhysicalResourceId: string;
  Data?: Record<string, string>;
}

/** The physical id of the one declared-services resource: it never changes, so updates never replace it. */
const PHYSICAL_ID = 'declared-services';

/**
 * onEvent handler of the declared-services custom resource (CDK Provider framework; infra/token-broker/declared-services.ts).
 * `ResourceProperties.Services` is a JSON array of service bodies in the API's shape (snake_case, with
 * `config.client_secret_arn`). On Create and Update every service is declared through the same code as the
 * admin API (ServiceAdministration.declare: created when missing, updated when it differs, otherwise left
 * alone); the first failure fails the deployment with its message.
 *
 * Delete does nothing: declared services are retained, like the services table itself. Removing a service from
 * the declaration (or the whole declaration) leaves it registered; delete it through the API when it is no
 * longer wanted. This keeps a rollback or a stack deletion from taking working services away from callers.
 */
export async function handler(
  event: CloudFormationCustomResourceEvent,
  context?: Context,
): Promise<OnEventResponse> {
  if (event.RequestType === 'Delete') {
    runtime.logger.info('declared services retained on delete', { physicalId: event.PhysicalResourceId });
    return { PhysicalResourceId: event.PhysicalResourceId };
  }
  const raw = (event.ResourceProperties as { Services?: unknown }).Services;
  if (typeof raw !== 'string') throw new Error('ResourceProperties.Services must be a JSON string');
  const services = JSON.parse(raw) as unknown;
  if (!Array.isArray(services)) throw new Error('ResourceProperties.Services must be a JSON array');
  const outcomes: Record<string, string> = {};
  // One budget for the whole declaration: every AWS call stops before the function's timeout.
  const budget = requestBudget(undefined, context);
  for (const body of services) {
    const name = String((body as { name?: unknown }).name);
    try {
      outcomes[name] = await runtime.admin.declare(body, budget);
    } catch (error) {
      runtime.logger.error('declaring a service failed', { serviceName: name, error });
      throw new Error(`declaring service "${name}" failed: ${(error as Error).message}`);
    }
  }
  runtime.logger.info('declared services', { outcomes });
  // Custom resource attributes are flat strings.
  return { PhysicalResourceId: PHYSICAL_ID, Data: { outcomes: JSON.stringify(outcomes) } };
}
