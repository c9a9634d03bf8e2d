import { asArray, type StatementJson } from './template';

/** A signed request as an API Gateway resource policy sees it. */
export interface InvokeRequest {
  /** The caller's account (`aws:PrincipalAccount`). */
  readonly account: string;
  /** The caller's organisation (`aws:PrincipalOrgID`), if any. */
  readonly orgId?: string;
  /** The VPC endpoint the request came through (`aws:SourceVpce`), if any. */
  readonly sourceVpce?: string;
  readonly method: string;
  readonly path: string;
}

/** What the template's pseudo parameters stand for. */
export interface PolicyScope {
  readonly ownAccount: string;
  readonly stage: string;
}

/** `explicit-deny` wins over everything; `no-allow` denies a caller from another account, not one from this one. */
export type PolicyDecision = 'allow' | 'explicit-deny' | 'no-allow';

function render(value: unknown, scope: PolicyScope): string {
  if (typeof value === 'string') return value;
  const v = value as { Ref?: string; 'Fn::Join'?: [string, unknown[]] };
  if (v.Ref === 'AWS::AccountId') return scope.ownAccount;
  if (v.Ref === 'AWS::Partition') return 'aws';
  if (v['Fn::Join']) return v['Fn::Join'][1].map((p) => render(p, scope)).join(v['Fn::Join'][0]);
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

function principalMatches(principal: unknown, request: InvokeRequest, scope: PolicyScope): boolean {
  const aws = (principal as { AWS?: unknown }).AWS;
  return asArray(aws as unknown[] | unknown).some((p) => {
    const arn = render(p, scope);
    return arn === '*' || arn === `arn:aws:iam::${request.account}:root` || arn === request.account;
  });
}

function contextValue(key: string, request: InvokeRequest): string | undefined {
  if (key === 'aws:PrincipalAccount') return request.account;
  if (key === 'aws:PrincipalOrgID') return request.orgId;
  if (key === 'aws:SourceVpce') return request.sourceVpce;
  throw new Error(`the test evaluator does not know the condition key ${key}`);
}

/** IAM semantics: StringNotEquals holds when the key is absent, StringEquals does not. */
function conditionsHold(
  conditions: StatementJson['Condition'],
  request: InvokeRequest,
  scope: PolicyScope,
): boolean {
  return Object.entries(conditions ?? {}).every(([operator, entries]) =>
    Object.entries(entries).every(([key, expected]) => {
      const values = asArray(expected as unknown[] | unknown).map((e) => render(e, scope));
      const actual = contextValue(key, request);
      if (operator === 'StringEquals') return actual !== undefined && values.includes(actual);
      if (operator === 'StringNotEquals') return actual === undefined || !values.includes(actual);
      throw new Error(`the test evaluator does not know the condition operator ${operator}`);
    }),
  );
}

/** IAM's matching of a resource pattern: literal, `*` for any characters (`/` included), `?` for one. */
function resourceMatches(resource: unknown, request: InvokeRequest, scope: PolicyScope): boolean {
  const pattern = render(resource, scope)
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${pattern}$`).test(`execute-api:/${scope.stage}/${request.method}${request.path}`);
}

/**
 * The decision of an API Gateway resource policy for one signed request, enough of IAM's evaluation for the
 * broker's statements (principals, the condition operators it uses, execute-api resources). A key or operator
 * it does not know makes it throw rather than guess.
 */
export function resourcePolicyDecision(
  statements: readonly StatementJson[],
  request: InvokeRequest,
  scope: PolicyScope,
): PolicyDecision {
  const applies = (s: StatementJson) =>
    asArray(s.Action).includes('execute-api:Invoke') &&
    principalMatches(s.Principal, request, scope) &&
    conditionsHold(s.Condition, request, scope) &&
    asArray(s.Resource as unknown[] | unknown).some((r) => resourceMatches(r, request, scope));
  if (statements.some((s) => s.Effect === 'Deny' && applies(s))) return 'explicit-deny';
  return statements.some((s) => s.Effect === 'Allow' && applies(s)) ? 'allow' : 'no-allow';
}
