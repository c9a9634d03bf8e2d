import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import { MAX_TOKEN_FUNCTION_TIMEOUT, tokenFunctionTimeout } from './functions';
import type { TokenBrokerProps } from './props';

const STAGE_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;
const SECRET_PREFIX_PATTERN = /^[A-Za-z0-9/_+=.@-]*\/$/;
const SECRET_ARN_PATTERN = /^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+\*?$/;
/** A concrete secret ARN, as a declared service's `clientSecretArn` must be (no wildcard). */
const CONCRETE_SECRET_ARN_PATTERN =
  /^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const DECLARED_NAME_PATTERN = /^[a-z][a-z0-9_-]{1,63}$/;

/** Throws naming the first prop that is out of range or contradicts another. */
export function validateProps(props: TokenBrokerProps): void {
  const stage = props.stage ?? 'dev';
  if (!STAGE_PATTERN.test(stage))
    throw new Error(`TokenBroker: stage "${stage}" must match ${STAGE_PATTERN}`);
  const secretPrefix = props.secretPrefix ?? `token-broker/${stage}/services/`;
  if (!SECRET_PREFIX_PATTERN.test(secretPrefix)) {
    throw new Error(
      `TokenBroker: secretPrefix "${secretPrefix}" must end with "/" and match ${SECRET_PREFIX_PATTERN}`,
    );
  }
  const entraTimeoutMs = (props.entraTimeout ?? Duration.seconds(10)).toMilliseconds();
  const retryBudget = props.entraRetryBudget ?? Duration.seconds(12);
  if (entraTimeoutMs < 1000 || entraTimeoutMs > retryBudget.toMilliseconds()) {
    throw new Error('TokenBroker: entraTimeout must be at least 1 second and at most entraRetryBudget');
  }
  const timeout = tokenFunctionTimeout(retryBudget);
  if (timeout.toMilliseconds() > MAX_TOKEN_FUNCTION_TIMEOUT.toMilliseconds()) {
    throw new Error(
      `TokenBroker: entraRetryBudget gives the token function a ${timeout.toSeconds()} s timeout; at most ` +
        `${MAX_TOKEN_FUNCTION_TIMEOUT.toSeconds()} s leaves room under API Gateway's 29 s`,
    );
  }
  for (const arn of props.allowedSecretArns ?? []) {
    // The handlers accept an exact ARN or a prefix ending in "*"; IAM would read any other "*" or "?" as a wildcard.
    if (!Token.isUnresolved(arn) && !SECRET_ARN_PATTERN.test(arn)) {
      throw new Error(
        `TokenBroker: allowedSecretArns entry "${arn}" must be a Secrets Manager secret ARN, or an ARN prefix ending in "*"`,
      );
    }
  }
  const interval = props.scheduledRefresh?.interval;
  if (interval !== undefined && !interval.isUnresolved()) {
    const minutes = interval.toMilliseconds() / 60_000;
    if (!Number.isInteger(minutes) || minutes < 1) {
      throw new Error('TokenBroker: scheduledRefresh.interval must be a whole number of minutes, at least 1');
    }
  }
  validateDeclaredServices(props, secretPrefix);
  const removal = props.removalPolicy ?? RemovalPolicy.RETAIN;
  if (removal !== RemovalPolicy.RETAIN && removal !== RemovalPolicy.DESTROY) {
    throw new Error('TokenBroker: removalPolicy must be RETAIN or DESTROY');
  }
  const isPrivate = props.endpointType === 'PRIVATE';
  const vpcEndpoints = props.vpcEndpoints ?? [];
  if (isPrivate && vpcEndpoints.length === 0) {
    throw new Error(
      'TokenBroker: a PRIVATE API needs at least one execute-api interface endpoint in vpcEndpoints',
    );
  }
  if (!isPrivate && (vpcEndpoints.length > 0 || (props.allowedVpcEndpoints ?? []).length > 0)) {
    throw new Error('TokenBroker: vpcEndpoints and allowedVpcEndpoints apply to PRIVATE APIs only');
  }
  if (isPrivate && (props.allowedSourceIps ?? []).length > 0) {
    throw new Error(
      'TokenBroker: allowedSourceIps applies to REGIONAL APIs; restrict a PRIVATE API by VPC endpoint',
    );
  }
  if (props.throttlingRateLimit !== undefined && !(props.throttlingRateLimit > 0)) {
    throw new Error('TokenBroker: throttlingRateLimit must be positive');
  }
  if (
    props.throttlingBurstLimit !== undefined &&
    !(Number.isInteger(props.throttlingBurstLimit) && props.throttlingBurstLimit > 0)
  ) {
    throw new Error('TokenBroker: throttlingBurstLimit must be a positive whole number');
  }
}

/**
 * Declared services: valid, distinct names, and secret ARNs the handlers will accept (mirrors
 * lib/secret-reference.ts): named under the secret prefix, or listed in allowedSecretArns.
 */
function validateDeclaredServices(props: TokenBrokerProps, secretPrefix: string): void {
  const seen = new Set<string>();
  const allowed = props.allowedSecretArns ?? [];
  for (const service of props.services ?? []) {
    const { name, clientSecretArn: arn } = service;
    if (Token.isUnresolved(name) || !DECLARED_NAME_PATTERN.test(name)) {
      throw new Error(`TokenBroker: declared service name "${name}" must match ${DECLARED_NAME_PATTERN}`);
    }
    if (seen.has(name)) throw new Error(`TokenBroker: service "${name}" is declared more than once`);
    seen.add(name);
    if (Token.isUnresolved(arn) || !CONCRETE_SECRET_ARN_PATTERN.test(arn)) {
      throw new Error(
        `TokenBroker: service "${name}": clientSecretArn "${arn}" must be a Secrets Manager secret ARN`,
      );
    }
    const secretName = arn.slice(arn.indexOf(':secret:') + ':secret:'.length);
    const listed = allowed.some((a) => (a.endsWith('*') ? arn.startsWith(a.slice(0, -1)) : a === arn));
    if (!secretName.startsWith(secretPrefix) && !listed) {
      throw new Error(
        `TokenBroker: service "${name}": clientSecretArn "${arn}" must name a secret under "${secretPrefix}" ` +
          'or be listed in allowedSecretArns',
      );
    }
  }
}
