/**
 * Prop validation, checked once before anything is built and reporting every problem at once (the way
 * aws-solutions-constructs' `CheckProps` does). Rules that the handlers also apply are not copied here: the
 * service schema, the secret reference and authority policies come from lib/, and the environment the functions
 * will get is parsed with the schema they read it with at cold start (functions/config.ts). What remains here is
 * what only the construct knows: names, API Gateway's limits, and props that contradict each other.
 */
import { RemovalPolicy, Token } from 'aws-cdk-lib';
import { readEnvironment } from '../../functions/config';
import { AuthorityPolicy, tokenEndpointFor } from '../../lib/authority';
import { allowedSecretArnProblems, SecretReferencePolicy } from '../../lib/secret-reference';
import { ServiceInputSchema } from '../../lib/service-config';
import { declaredServiceBody } from './declared-services';
import { brokerEnvironment, MAX_TOKEN_FUNCTION_TIMEOUT, tokenFunctionTimeout } from './functions';
import { type ResolvedBrokerProps, resolveProps, type TokenBrokerProps } from './props';

/** Stage names become part of resource names (API, KMS alias, alarms, secret prefix). */
const STAGE_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;

/** Which prop sets each environment variable, so a refusal names what the operator wrote. */
const PROP_OF_VARIABLE: Record<string, string> = {
  TOKEN_BROKER_SECRET_PREFIX: 'secretPrefix',
  TOKEN_BROKER_INSTANCE_ID: 'namePrefix',
  TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: 'allowedAuthorityHosts',
  TOKEN_BROKER_ALLOWED_SECRET_ARNS: 'allowedSecretArns',
  TOKEN_BROKER_ENTRA_TIMEOUT_MS: 'entraTimeout',
  TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: 'entraRetryBudget',
  POWERTOOLS_LOG_LEVEL: 'logLevel',
  HTTPS_PROXY: 'httpsProxy',
};

/** Throws one error listing every prop that is out of range, contradicts another, or that the handlers would refuse. */
export function validateProps(props: TokenBrokerProps): void {
  const resolved = resolveProps(props);
  const problems = [
    ...checkStage(resolved),
    ...checkEnvironment(resolved),
    ...checkTimeouts(resolved),
    ...allowedSecretArnProblems(literal(resolved.allowedSecretArns)).map((p) => `allowedSecretArns: ${p}`),
    ...checkEndpoint(resolved),
    ...checkNetwork(resolved),
    ...checkScheduleAndLimits(resolved),
    ...checkServicesAndPolicies(resolved),
    ...checkFederation(resolved),
  ];
  if (problems.length > 0) {
    throw new Error(`TokenBroker: invalid props:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Entries that are known at synth (a token resolves at deploy time and cannot be checked here). */
function literal(values: readonly string[]): string[] {
  return values.filter((v) => !Token.isUnresolved(v));
}

/** Runs a lib/ check that throws, as a list of problems. */
function problemsOf(check: () => void, prefix = ''): string[] {
  try {
    check();
    return [];
  } catch (error) {
    return [`${prefix}${(error as Error).message}`];
  }
}

function checkStage(props: ResolvedBrokerProps): string[] {
  return STAGE_PATTERN.test(props.stage) ? [] : [`stage "${props.stage}" must match ${STAGE_PATTERN}`];
}

/**
 * The environment the functions will get, parsed as functions/config.ts parses it at cold start (the resources'
 * names and ARNs are not known yet: placeholders stand in for them).
 */
function checkEnvironment(props: ResolvedBrokerProps): string[] {
  const environment = brokerEnvironment(props, {
    servicesTableName: 'services',
    tokenCacheTableName: 'token-cache',
    keyArn: 'arn:aws:kms:us-east-1:111122223333:key/placeholder',
  });
  // Tokens resolve at deploy time; their placeholders would be read as values.
  const known = Object.fromEntries(Object.entries(environment).filter(([, v]) => !Token.isUnresolved(v)));
  return problemsOf(() => readEnvironment(known)).flatMap((message) =>
    message
      .replace(/^Token Broker is misconfigured: /, '')
      .split('; ')
      .map((p) => {
        const variable = p.slice(0, p.indexOf(':'));
        const prop = PROP_OF_VARIABLE[variable];
        return prop === undefined ? p : `${prop} (${p})`;
      }),
  );
}

function checkTimeouts(props: ResolvedBrokerProps): string[] {
  const problems: string[] = [];
  const entraTimeoutMs = props.entraTimeout.toMilliseconds();
  if (entraTimeoutMs < 1000 || entraTimeoutMs > props.entraRetryBudget.toMilliseconds()) {
    problems.push('entraTimeout must be at least 1 second and at most entraRetryBudget');
  }
  const timeout = tokenFunctionTimeout(props.entraRetryBudget);
  if (timeout.toMilliseconds() > MAX_TOKEN_FUNCTION_TIMEOUT.toMilliseconds()) {
    problems.push(
      `entraRetryBudget gives the token function a ${timeout.toSeconds()} s timeout; at most ` +
        `${MAX_TOKEN_FUNCTION_TIMEOUT.toSeconds()} s leaves room under API Gateway's 29 s`,
    );
  }
  return problems;
}

function checkEndpoint(props: ResolvedBrokerProps): string[] {
  const problems: string[] = [];
  const isPrivate = props.endpointType === 'PRIVATE';
  const vpcEndpoints = props.vpcEndpoints ?? [];
  if (isPrivate && vpcEndpoints.length === 0) {
    problems.push('a PRIVATE API needs at least one execute-api interface endpoint in vpcEndpoints');
  }
  if (!isPrivate && (vpcEndpoints.length > 0 || (props.allowedVpcEndpoints ?? []).length > 0)) {
    problems.push('vpcEndpoints and allowedVpcEndpoints apply to PRIVATE APIs only');
  }
  if (isPrivate && (props.allowedSourceIps ?? []).length > 0) {
    problems.push('allowedSourceIps applies to REGIONAL APIs; restrict a PRIVATE API by VPC endpoint');
  }
  return problems;
}

function checkNetwork(props: ResolvedBrokerProps): string[] {
  const problems: string[] = [];
  if (props.vpc === undefined) {
    const orphans = (['vpcSubnets', 'securityGroups', 'createVpcEndpoints'] as const).filter(
      (key) => props[key] !== undefined,
    );
    if (orphans.length > 0) problems.push(`${orphans.join(', ')} apply only with vpc`);
  }
  return problems;
}

function checkScheduleAndLimits(props: ResolvedBrokerProps): string[] {
  const problems: string[] = [];
  const interval = props.scheduledRefresh?.interval;
  if (interval !== undefined && !interval.isUnresolved()) {
    const minutes = interval.toMilliseconds() / 60_000;
    if (!Number.isInteger(minutes) || minutes < 1) {
      problems.push('scheduledRefresh.interval must be a whole number of minutes, at least 1');
    }
  }
  if (props.removalPolicy !== RemovalPolicy.RETAIN && props.removalPolicy !== RemovalPolicy.DESTROY) {
    problems.push('removalPolicy must be RETAIN or DESTROY');
  }
  if (props.throttlingRateLimit !== undefined && !(props.throttlingRateLimit > 0)) {
    problems.push('throttlingRateLimit must be positive');
  }
  const burst = props.throttlingBurstLimit;
  if (burst !== undefined && !(Number.isInteger(burst) && burst > 0)) {
    problems.push('throttlingBurstLimit must be a positive whole number');
  }
  return problems;
}

/**
 * The authority policy, as the functions build it at cold start (functions/runtime.ts). Declared services are
 * checked as the admin API checks a created service (functions/declare-services.ts sends
 * them through ServiceAdministration.declare at deploy time): the service schema, the authority policy and the
 * secret reference policy, built from the same settings the functions get. A problem found here would otherwise
 * fail the deployment half-way, inside the custom resource.
 */
function checkServicesAndPolicies(props: ResolvedBrokerProps): string[] {
  const problems: string[] = [];
  let authority: AuthorityPolicy | undefined;
  try {
    authority = new AuthorityPolicy(literal(props.allowedAuthorityHosts));
  } catch (error) {
    problems.push(`allowedAuthorityHosts (${(error as Error).message})`);
  }
  const references = new SecretReferencePolicy(props.secretPrefix, literal(props.allowedSecretArns));
  const seen = new Set<string>();
  (props.services ?? []).forEach((service, index) => {
    const at = `services[${index}]${typeof service.name === 'string' ? ` ("${service.name}")` : ''}`;
    if (seen.has(service.name)) problems.push(`${at}: declared more than once`);
    seen.add(service.name);
    const unresolved = Object.entries(service).filter(
      ([, v]) => typeof v === 'string' && Token.isUnresolved(v),
    );
    if (unresolved.length > 0) {
      problems.push(`${at}: ${unresolved.map(([k]) => k).join(', ')} must be literal values, not tokens`);
      return;
    }
    const parsed = ServiceInputSchema.safeParse(declaredServiceBody(service));
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        problems.push(`${at}: ${[...issue.path].join('.') || '(service)'}: ${issue.message}`);
      }
      return;
    }
    const { config } = parsed.data;
    if (authority) {
      problems.push(
        ...problemsOf(
          () => authority.assertAllowed(tokenEndpointFor(config.authority_url, config.tenant_id)),
          `${at}: `,
        ),
      );
    }
    problems.push(
      ...problemsOf(() => references.assertAllowed(service.clientSecretArn, service.name), `${at}: `),
    );
  });
  return problems;
}

/**
 * The issuer is compared character for character with the tokens' `iss` claim by Entra, so it is taken as AWS
 * prints it: an https URL without credentials, query, fragment or trailing slash. Audiences become IAM condition
 * values (StringEquals: no wildcards).
 */
function checkFederation(props: ResolvedBrokerProps): string[] {
  const { federation } = props;
  if (federation === undefined) return [];
  const problems: string[] = [];
  const issuer = federation.issuer;
  if (typeof issuer !== 'string' || issuer === '') {
    problems.push(
      'federation.issuer is required: the URL `aws iam get-outbound-web-identity-federation-info` prints',
    );
  } else if (!Token.isUnresolved(issuer)) {
    let url: URL | undefined;
    try {
      url = new URL(issuer);
    } catch {
      // reported below
    }
    if (
      url === undefined ||
      url.protocol !== 'https:' ||
      url.username !== '' ||
      url.password !== '' ||
      url.search !== '' ||
      url.hash !== '' ||
      issuer.endsWith('/')
    ) {
      problems.push(
        `federation.issuer "${issuer}" must be the https issuer URL exactly as AWS prints it (no query, fragment or trailing slash)`,
      );
    }
  }
  for (const audience of literal(federation.audiences ?? [])) {
    if (audience.trim() === '' || audience.length > 1000 || /[*?\s]/.test(audience)) {
      problems.push(
        `federation.audiences: "${audience}" must be a non-empty audience without spaces, "*" or "?"`,
      );
    }
  }
  return problems;
}
