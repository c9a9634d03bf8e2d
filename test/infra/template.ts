import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CfnElement, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';

/** A CloudFormation resource as it appears in a synthesized template. */
export interface CfnResourceJson {
  Type: string;
  Properties: Record<string, unknown>;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}

/** One statement of an IAM policy document. */
export interface StatementJson {
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
  Sid?: string;
}

export const asArray = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** Resources of one type, by logical id. */
export function resourcesOfType(template: Template, type: string): Record<string, CfnResourceJson> {
  return template.findResources(type) as Record<string, CfnResourceJson>;
}

/** The logical id CloudFormation knows a construct's L1 resource by. */
export function logicalIdOf(stack: Stack, construct: IConstruct): string {
  return stack.getLogicalId(construct.node.defaultChild as CfnElement);
}

/** Every statement of the policies attached to a role (by the role's logical id). */
export function roleStatements(template: Template, roleLogicalId: string): StatementJson[] {
  return Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))
    .filter((p) => asArray(p.Properties.Roles).some((r) => (r as { Ref?: string }).Ref === roleLogicalId))
    .flatMap((p) => asArray((p.Properties.PolicyDocument as { Statement: StatementJson[] }).Statement));
}

/** The role logical id of a function resource (its `Role: Fn::GetAtt [role, Arn]`). */
export function functionRoleId(template: Template, functionLogicalId: string): string {
  const fn = resourcesOfType(template, 'AWS::Lambda::Function')[functionLogicalId];
  if (!fn) throw new Error(`no function ${functionLogicalId}`);
  return (fn.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
}

/** The full path of every API Gateway resource (`/api/v2/...`), by logical id; the root is `/`. */
export function apiResourcePaths(template: Template): Record<string, string> {
  const resources = resourcesOfType(template, 'AWS::ApiGateway::Resource');
  const paths: Record<string, string> = {};
  const pathOf = (id: string): string => {
    const cached = paths[id];
    if (cached !== undefined) return cached;
    const resource = resources[id];
    if (!resource) throw new Error(`no API resource ${id}`);
    const parent = resource.Properties.ParentId as { Ref?: string };
    const parentPath = parent.Ref ? pathOf(parent.Ref) : '';
    const full = `${parentPath}/${resource.Properties.PathPart as string}`;
    paths[id] = full;
    return full;
  };
  for (const id of Object.keys(resources)) pathOf(id);
  return paths;
}

/** Every API method as `{ path, method, resource }`, with the root resource's methods at `/`. */
export function apiMethods(
  template: Template,
): Array<{ path: string; method: string; properties: Record<string, unknown> }> {
  const paths = apiResourcePaths(template);
  return Object.values(resourcesOfType(template, 'AWS::ApiGateway::Method')).map((m) => {
    const resourceId = m.Properties.ResourceId as { Ref?: string };
    return {
      path: resourceId.Ref ? (paths[resourceId.Ref] as string) : '/',
      method: m.Properties.HttpMethod as string,
      properties: m.Properties,
    };
  });
}

/** Substitutes sample values for the `$context` variables of an API Gateway template, so it can be parsed. */
export function renderGatewayTemplate(template: string): unknown {
  return JSON.parse(
    template
      .replaceAll('$context.error.messageString', '"sample message"')
      .replaceAll('$context.requestId', 'sample-id'),
  );
}

/** A template value as a string, references written `<LogicalId>` as cdk-nag writes them. */
export function renderArn(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as { Ref?: string; 'Fn::Join'?: [string, unknown[]]; 'Fn::GetAtt'?: [string, string] };
  if (v.Ref) return `<${v.Ref}>`;
  if (v['Fn::GetAtt']) return `<${v['Fn::GetAtt'].join('.')}>`;
  if (v['Fn::Join']) return v['Fn::Join'][1].map(renderArn).join(v['Fn::Join'][0]);
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

/**
 * For the unconditional Allow statements of a service (e.g. `secretsmanager`), each action and the resources it
 * is allowed on (rendered, sorted): independent of how IAM policy minimization merged the statements.
 */
export function allowedResourcesByAction(
  statements: StatementJson[],
  service: string,
): Record<string, string[]> {
  const byAction: Record<string, string[]> = {};
  for (const s of statements) {
    if (s.Effect !== 'Allow' || s.Condition !== undefined) continue;
    for (const action of asArray(s.Action).filter((a) => a.startsWith(`${service}:`))) {
      byAction[action] = [
        ...new Set([...(byAction[action] ?? []), ...asArray(s.Resource).map(renderArn)]),
      ].sort();
    }
  }
  return byAction;
}

/** What the cfn-guard plugin (Control Tower's proactive controls) reported for a synthesized app. */
export interface GuardReport {
  /** Rules violated and not acknowledged (a synthesis with any of these fails). */
  violations: string[];
  /** Acknowledged rules, each with the construct paths it was acknowledged for, sorted. */
  acknowledged: Record<string, string[]>;
}

/** Reads the cfn-guard plugin's part of the validation report CDK writes into the cloud assembly. */
export function guardReport(assemblyDirectory: string): GuardReport {
  const report = JSON.parse(readFileSync(path.join(assemblyDirectory, 'validation-report.json'), 'utf8')) as {
    pluginReports: Array<{
      pluginName: string;
      violations: Array<{ ruleName: string }>;
      suppressedViolations?: Array<{
        ruleName: string;
        violatingConstructs: Array<{ constructPath: string }>;
      }>;
    }>;
  };
  const guard = report.pluginReports.find((p) => p.pluginName === 'cdk-validator-cfnguard');
  const acknowledged: Record<string, string[]> = {};
  for (const v of guard?.suppressedViolations ?? []) {
    acknowledged[v.ruleName] = [
      ...(acknowledged[v.ruleName] ?? []),
      ...v.violatingConstructs.map((c) => c.constructPath),
    ].sort();
  }
  return { violations: (guard?.violations ?? []).map((v) => v.ruleName), acknowledged };
}
