/**
 * The stack `npx cdk synth` produces with no context (stage `dev`), checked resource by resource. One synthesis
 * (with real esbuild bundling and cdk-nag) is shared by every test in this file.
 */

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { AwsSolutionsChecks } from 'cdk-nag';
import { createCheckedApp } from '../../infra/create-app';
import type { TokenBrokerStack } from '../../infra/stack';
import { ENTRA_FAILURES_METRIC } from '../../infra/token-broker';
import { PROXY_ONLY_MODULES } from '../../infra/token-broker/functions';
import { DEFAULT_FLOW_SETTINGS } from '../../lib/client-credentials-flow';
import { BROKER_METRICS } from '../../lib/metrics';
import { ROUTES } from '../../lib/routes';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE } from '../../lib/tables';
import { NO_BUNDLING, type SynthesizedBroker, synthesizeBroker } from './synth';
import {
  allowedResourcesByAction,
  apiMethods,
  asArray,
  type CfnResourceJson,
  functionRoleId,
  guardReport,
  logicalIdOf,
  renderArn,
  renderGatewayTemplate,
  resourcesOfType,
  roleStatements,
  type StatementJson,
} from './template';

let synthesized: SynthesizedBroker;
let stack: TokenBrokerStack;
let template: Template;
let ids: {
  token: string;
  admin: string;
  delegated: string;
  refresh: string;
  services: string;
  cache: string;
  key: string;
};

beforeAll(() => {
  synthesized = synthesizeBroker();
  stack = synthesized.stack;
  template = synthesized.template;
  const { broker } = stack;
  ids = {
    token: logicalIdOf(stack, broker.tokenFunction),
    admin: logicalIdOf(stack, broker.adminFunction),
    delegated: logicalIdOf(stack, broker.delegatedFunction),
    refresh: logicalIdOf(stack, broker.refreshFunction as NonNullable<typeof broker.refreshFunction>),
    services: logicalIdOf(stack, broker.servicesTable),
    cache: logicalIdOf(stack, broker.tokenCacheTable),
    key: logicalIdOf(stack, broker.key),
  };
});

const fnProps = (id: string) =>
  resourcesOfType(template, 'AWS::Lambda::Function')[id]?.Properties as Record<string, unknown>;
const environmentOf = (id: string) =>
  (fnProps(id).Environment as { Variables: Record<string, unknown> }).Variables;
const assetDirOf = (id: string): string => {
  const s3Key = (fnProps(id).Code as { S3Key: string }).S3Key;
  return path.join(synthesized.assembly.directory, `asset.${s3Key.replace(/\.zip$/, '')}`);
};
/** Statements of a function's role that mention any action of `service` (e.g. `dynamodb`). */
const serviceStatements = (fnId: string, service: string): StatementJson[] =>
  roleStatements(template, functionRoleId(template, fnId)).filter((s) =>
    asArray(s.Action).some((a) => a.startsWith(`${service}:`)),
  );
/** Table actions of a function, per table logical id. */
const tableActions = (fnId: string): Record<string, string[]> => {
  const byTable: Record<string, string[]> = {};
  for (const s of serviceStatements(fnId, 'dynamodb')) {
    for (const r of asArray(s.Resource)) {
      const table = (r as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      byTable[table] = [...(byTable[table] ?? []), ...asArray(s.Action)].sort();
    }
  }
  return byTable;
};
const SECRETS_UNDER_PREFIX =
  'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:token-broker/dev/services/*';

describe('API Gateway', () => {
  it('authorizes every method with AWS_IAM, except the consent callback (test/infra/authorization-code.test.ts)', () => {
    const methods = apiMethods(template);
    const open = ROUTES.filter((r) => r.auth === 'none').flatMap((r) =>
      r.methods.map((m) => `${m} ${r.resource}`),
    );

    expect(methods.length).toBeGreaterThan(0);
    expect(
      methods.filter(
        (m) => m.properties.AuthorizationType !== 'AWS_IAM' && !open.includes(`${m.method} ${m.path}`),
      ),
    ).toEqual([]);
  });

  it('routes every method of every route in lib/routes.ts to the function that serves it', () => {
    const methods = apiMethods(template);

    for (const route of ROUTES) {
      for (const method of route.methods) {
        const found = methods.find((m) => m.path === route.resource && m.method === method);
        const integration = found?.properties.Integration as { Type: string; Uri: unknown } | undefined;
        expect({ route: `${method} ${route.resource}`, type: integration?.Type }).toEqual({
          route: `${method} ${route.resource}`,
          type: 'AWS_PROXY',
        });
        expect(JSON.stringify(integration?.Uri)).toContain(ids[route.function]);
      }
    }
  });

  it('integrates no other method with a function', () => {
    const integrated = apiMethods(template).filter(
      (m) => (m.properties.Integration as { Type: string }).Type === 'AWS_PROXY',
    );

    expect(integrated).toHaveLength(ROUTES.reduce((n, r) => n + r.methods.length, 0));
  });

  it("answers a route's other methods with 405, its Allow header and the error shape", () => {
    for (const route of ROUTES) {
      const any = apiMethods(template).find((m) => m.path === route.resource && m.method === 'ANY');
      const integration = any?.properties.Integration as {
        Type: string;
        IntegrationResponses: Array<{
          StatusCode: string;
          ResponseTemplates: Record<string, string>;
          ResponseParameters: Record<string, string>;
        }>;
      };
      const response = integration.IntegrationResponses[0];

      expect(integration.Type).toBe('MOCK');
      expect(response?.StatusCode).toBe('405');
      expect(response?.ResponseParameters['method.response.header.Allow']).toBe(
        `'${route.methods.join(', ')}'`,
      );
      expect(JSON.parse(response?.ResponseTemplates['application/json'] as string)).toEqual({
        error: { code: 405, message: expect.stringContaining(route.methods.join(', ')) },
      });
    }
  });

  it('answers every path that is not a route with 404 in the error shape', () => {
    const routePaths = new Set(ROUTES.map((r) => r.resource));
    const resourcePaths = new Set(apiMethods(template).map((m) => m.path));
    const notFound = apiMethods(template).filter((m) => !routePaths.has(m.path));

    // The greedy catch-all, and every resource on the way to a route (they would otherwise answer 403).
    expect(resourcePaths).toEqual(
      new Set([...routePaths, '/', '/api', '/api/v2', '/api/v2/system', '/api/v2/{service}', '/{proxy+}']),
    );
    for (const m of notFound) {
      const integration = m.properties.Integration as {
        Type: string;
        IntegrationResponses: Array<{ StatusCode: string; ResponseTemplates: Record<string, string> }>;
      };
      expect({ path: m.path, method: m.method, type: integration.Type }).toEqual({
        path: m.path,
        method: 'ANY',
        type: 'MOCK',
      });
      expect(
        JSON.parse(integration.IntegrationResponses[0]?.ResponseTemplates['application/json'] as string),
      ).toEqual({
        error: { code: 404, message: 'no route matches this path' },
      });
    }
  });

  it("answers API Gateway's own errors in the API's error shape, with the status they are sent with", () => {
    const responses = Object.values(resourcesOfType(template, 'AWS::ApiGateway::GatewayResponse'));

    expect(responses).toHaveLength(21);
    for (const { Properties: p } of responses) {
      const body = renderGatewayTemplate(
        (p.ResponseTemplates as Record<string, string>)['application/json'] as string,
      );
      const code =
        p.StatusCode === undefined ? (p.ResponseType === 'DEFAULT_4XX' ? 400 : 500) : Number(p.StatusCode);
      expect({ type: p.ResponseType, body }).toEqual({
        type: p.ResponseType,
        body: { error: { code, message: expect.any(String), context: { request_id: 'sample-id' } } },
      });
    }
  });

  it('leaves the status of the DEFAULT_4XX and DEFAULT_5XX fallbacks alone (a status there overrides every type)', () => {
    const defaults = Object.values(resourcesOfType(template, 'AWS::ApiGateway::GatewayResponse')).filter(
      (r) => String(r.Properties.ResponseType).startsWith('DEFAULT_'),
    );

    expect(defaults.map((d) => d.Properties.StatusCode)).toEqual([undefined, undefined]);
  });

  it('tells an unsigned caller to sign the request with SigV4 (403)', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'MISSING_AUTHENTICATION_TOKEN',
      StatusCode: '403',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('Signature Version 4') },
    });
  });

  it('is a regional endpoint without a resource policy by default', () => {
    const api = Object.values(resourcesOfType(template, 'AWS::ApiGateway::RestApi'))[0] as CfnResourceJson;

    expect(api.Properties.EndpointConfiguration).toEqual({ Types: ['REGIONAL'] });
    expect(api.Properties.Policy).toBeUndefined();
  });

  it('throttles the stage at 50 requests per second with bursts of 100 by default', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({
          HttpMethod: '*',
          ResourcePath: '/*',
          ThrottlingRateLimit: 50,
          ThrottlingBurstLimit: 100,
        }),
      ]),
    });
  });

  it('traces the stage with X-Ray', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'dev', TracingEnabled: true });
  });

  it('writes JSON access logs naming the caller to a log group kept for a year', () => {
    const stage = Object.values(resourcesOfType(template, 'AWS::ApiGateway::Stage'))[0] as CfnResourceJson;
    const settings = stage.Properties.AccessLogSetting as { DestinationArn: unknown; Format: string };
    const logGroupId = /:log-group:<(\w+)>$/.exec(renderArn(settings.DestinationArn))?.[1] as string;
    const logGroup = resourcesOfType(template, 'AWS::Logs::LogGroup')[logGroupId];

    expect(JSON.parse(settings.Format)).toMatchObject({
      requestId: '$context.requestId',
      status: '$context.status',
      userArn: '$context.identity.userArn',
      resourcePath: '$context.resourcePath',
    });
    expect(logGroup?.Properties.RetentionInDays).toBe(365);
  });
});

describe('Lambda', () => {
  it('runs every function on nodejs24.x and arm64 with the handler index.handler', () => {
    for (const id of [ids.token, ids.admin, ids.refresh]) {
      expect(fnProps(id)).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
      });
    }
  });

  it("gives the token function time for a lease wait and Entra's retry budget, and less than API Gateway's 29 s", () => {
    const budgetSeconds = Number(environmentOf(ids.token).TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS) / 1000;
    const timeout = fnProps(ids.token).Timeout as number;

    expect(budgetSeconds).toBe(12);
    expect(timeout).toBe(DEFAULT_FLOW_SETTINGS.leaseWaitMs / 1000 + budgetSeconds + 5);
    expect(timeout).toBeLessThanOrEqual(25);
  });

  it("wires each function's environment to the stack's own tables, key and secret prefix", () => {
    for (const id of [ids.token, ids.admin]) {
      expect(environmentOf(id)).toEqual({
        TOKEN_BROKER_SERVICES_TABLE: { Ref: ids.services },
        TOKEN_BROKER_TOKEN_CACHE_TABLE: { Ref: ids.cache },
        TOKEN_BROKER_SECRET_PREFIX: 'token-broker/dev/services/',
        TOKEN_BROKER_INSTANCE_ID: 'token-broker-dev',
        TOKEN_BROKER_SECRET_KMS_KEY_ID: { 'Fn::GetAtt': [ids.key, 'Arn'] },
        TOKEN_BROKER_TOKEN_KEY_ID: { 'Fn::GetAtt': [ids.key, 'Arn'] },
        TOKEN_BROKER_ALLOWED_AUTHORITY_HOSTS: '',
        TOKEN_BROKER_ALLOWED_SECRET_ARNS: '',
        TOKEN_BROKER_ENTRA_TIMEOUT_MS: '10000',
        TOKEN_BROKER_ENTRA_RETRY_BUDGET_MS: '12000',
        POWERTOOLS_SERVICE_NAME: 'token-broker',
        POWERTOOLS_LOG_LEVEL: 'INFO',
      });
    }
  });

  it('wires the refresh function to the same tables and settings, with a horizon of the interval plus a minute', () => {
    const { TOKEN_BROKER_REFRESH_HORIZON_MS, ...rest } = environmentOf(ids.refresh);

    expect(rest).toEqual(environmentOf(ids.token));
    expect(rest.TOKEN_BROKER_SERVICES_TABLE).toEqual({ Ref: ids.services });
    expect(rest.TOKEN_BROKER_TOKEN_CACHE_TABLE).toEqual({ Ref: ids.cache });
    expect(TOKEN_BROKER_REFRESH_HORIZON_MS).toBe(String(6 * 60_000));
  });

  it('has a dashboard that graphs every metric the core emits, Entra latency and the API', () => {
    const dashboards = Object.values(resourcesOfType(template, 'AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    const body = JSON.stringify(dashboards[0]?.Properties.DashboardBody);
    for (const metric of [...BROKER_METRICS, 'EntraLatency']) expect(body).toContain(`\\"${metric}\\"`);
    expect(body).toContain('TokenBroker');
    expect(body).toContain('5XXError');
  });

  it('runs the refresh function every 5 minutes from an EventBridge rule', () => {
    const rules = Object.values(resourcesOfType(template, 'AWS::Events::Rule'));

    expect(rules).toHaveLength(1);
    expect(rules[0]?.Properties).toMatchObject({
      ScheduleExpression: 'rate(5 minutes)',
      State: 'ENABLED',
      Targets: [expect.objectContaining({ Arn: { 'Fn::GetAtt': [ids.refresh, 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [ids.refresh, 'Arn'] },
      Principal: 'events.amazonaws.com',
    });
  });

  it('declares no services (no custom resource) when none are given', () => {
    expect(stack.broker.declaredServices).toBeUndefined();
    expect(Object.keys(template.findResources('Custom::TokenBrokerDeclaredServices'))).toEqual([]);
  });

  it('sizes the token function at 1,024 MB and the admin function at 512 MB, as measured', () => {
    expect(fnProps(ids.token).MemorySize).toBe(1024);
    expect(fnProps(ids.admin).MemorySize).toBe(512);
  });

  it('logs each function to its own log group, kept for a year', () => {
    for (const id of [ids.token, ids.admin]) {
      const logGroupId = (fnProps(id).LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      expect(resourcesOfType(template, 'AWS::Logs::LogGroup')[logGroupId]?.Properties.RetentionInDays).toBe(
        365,
      );
    }
  });

  it('traces every function with X-Ray', () => {
    for (const id of [ids.token, ids.admin, ids.refresh])
      expect(fnProps(id).TracingConfig).toEqual({ Mode: 'Active' });
  });

  it('bundles everything, its AWS client included: the bundle requires nothing but Node built-ins', () => {
    for (const id of [ids.token, ids.admin]) {
      const code = readFileSync(path.join(assetDirOf(id), 'index.js'), 'utf8');
      // Calls only: not `obj.require(`, nor the `[require("...")]` an SDK error message quotes.
      const required = [...code.matchAll(/(?<![[\w.$])require\("([^"]+)"\)/g)].map((m) => m[1] as string);
      const outside = required.filter((r) => !r.startsWith('node:') && !builtinModules.includes(r));

      // The broker's AWS JSON client (functions/aws-json.ts) with its DynamoDB target.
      expect(code).toContain('DynamoDB_20120810');
      expect(outside).toEqual([]);
    }
  });

  it("leaves the HTTPS proxy's package out of the bundles of a broker without httpsProxy (imported only for a proxy)", () => {
    const code = readFileSync(path.join(assetDirOf(ids.token), 'index.js'), 'utf8');

    for (const module of PROXY_ONLY_MODULES) expect(code).toContain(`import("${module}")`);
  });

  it('loads the token bundle where undici cannot be found: nothing requires it without a proxy', () => {
    // Prepare: a directory with no node_modules above it, and the variables the handler reads at cold start.
    const dir = mkdtempSync(path.join(tmpdir(), 'token-broker-bundle-'));
    const bundle = path.join(dir, 'index.js');
    copyFileSync(path.join(assetDirOf(ids.token), 'index.js'), bundle);

    // Act
    const loaded = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(bundle)})`], {
      cwd: dir,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        AWS_REGION: 'us-east-1',
        TOKEN_BROKER_SERVICES_TABLE: 'services',
        TOKEN_BROKER_TOKEN_CACHE_TABLE: 'tokens',
        TOKEN_BROKER_TOKEN_KEY_ID: 'alias/token-broker',
      },
    });

    // Assess
    expect({ status: loaded.status, stderr: loaded.stderr.includes('undici') }).toEqual({
      status: 0,
      stderr: false,
    });
  });

  it('ships a source map without sources next to each minified bundle', () => {
    for (const id of [ids.token, ids.admin]) {
      const mapFile = path.join(assetDirOf(id), 'index.js.map');
      expect(existsSync(mapFile)).toBe(true);
      expect(
        (JSON.parse(readFileSync(mapFile, 'utf8')) as { sourcesContent?: unknown }).sourcesContent,
      ).toBeUndefined();
    }
  });
});

describe('DynamoDB and KMS', () => {
  it('keys the services table as SERVICES_TABLE says, with point-in-time recovery and deletion protection', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: SERVICES_TABLE.partitionKey, KeyType: 'HASH' }],
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
      }),
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('keys the token cache table as TOKEN_CACHE_TABLE says, with TTL on its ttl attribute', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: TOKEN_CACHE_TABLE.partitionKey, KeyType: 'HASH' },
        { AttributeName: TOKEN_CACHE_TABLE.sortKey, KeyType: 'RANGE' },
      ],
      TimeToLiveSpecification: { AttributeName: TOKEN_CACHE_TABLE.ttlAttribute, Enabled: true },
    });
  });

  it("bills every table on demand and encrypts it with the stack's customer-managed key", () => {
    const tables = Object.values(resourcesOfType(template, 'AWS::DynamoDB::Table'));

    expect(tables).toHaveLength(3);
    for (const t of tables) {
      expect(t.Properties).toMatchObject({
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: {
          SSEEnabled: true,
          SSEType: 'KMS',
          KMSMasterKeyId: { 'Fn::GetAtt': [ids.key, 'Arn'] },
        },
      });
    }
  });

  it('rotates the KMS key and keeps it when the stack is deleted', () => {
    template.hasResource('AWS::KMS::Key', {
      Properties: Match.objectLike({ EnableKeyRotation: true }),
      DeletionPolicy: 'Retain',
    });
  });
});

describe('least privilege', () => {
  it('gives each function exactly the table actions of the adapter calls it makes', () => {
    expect(tableActions(ids.token)).toEqual({
      [ids.services]: ['dynamodb:GetItem'],
      [ids.cache]: [
        'dynamodb:BatchWriteItem',
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ],
    });
    expect(tableActions(ids.refresh)).toEqual({
      [ids.services]: ['dynamodb:GetItem', 'dynamodb:Scan'],
      [ids.cache]: [
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ],
    });
    expect(tableActions(ids.admin)).toEqual({
      [ids.services]: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan'],
      [ids.cache]: ['dynamodb:BatchWriteItem', 'dynamodb:Query'],
    });
  });

  it('lets the token and refresh functions only read secrets, and only under the prefix', () => {
    for (const id of [ids.token, ids.refresh]) {
      const allowed = allowedResourcesByAction(
        roleStatements(template, functionRoleId(template, id)),
        'secretsmanager',
      );

      expect(allowed).toEqual({ 'secretsmanager:GetSecretValue': [SECRETS_UNDER_PREFIX] });
    }
  });

  it('lets the admin function create (with tags), check and delete secrets under the prefix, never read one', () => {
    const allowed = allowedResourcesByAction(
      roleStatements(template, functionRoleId(template, ids.admin)),
      'secretsmanager',
    );

    expect(allowed).toEqual({
      'secretsmanager:CreateSecret': [SECRETS_UNDER_PREFIX],
      'secretsmanager:TagResource': [SECRETS_UNDER_PREFIX],
      'secretsmanager:DeleteSecret': [SECRETS_UNDER_PREFIX],
      'secretsmanager:DescribeSecret': [SECRETS_UNDER_PREFIX],
    });
  });

  it('lets the admin function read only secrets without the managed tag (certificate_secret_arn checks), never the broker’s own', () => {
    const reads = roleStatements(template, functionRoleId(template, ids.admin)).filter(
      (statement) =>
        statement.Effect === 'Allow' &&
        [statement.Action].flat().some((action) => action === 'secretsmanager:GetSecretValue'),
    );

    expect(reads).toHaveLength(1);
    expect(reads[0]?.Condition).toEqual({
      Null: { 'secretsmanager:ResourceTag/token-broker:service': 'true' },
    });
  });

  it('uses the KMS key only through DynamoDB, through Secrets Manager for secrets under the prefix, or to seal tokens', () => {
    for (const id of [ids.token, ids.admin, ids.refresh]) {
      // The signing keys of kms_certificate services (every key tagged for this broker) are another matter:
      // test/infra/credentials-iam.test.ts.
      const signingKeys = (s: StatementJson) =>
        asArray(s.Action).includes('kms:CreateKey') ||
        asArray(s.Resource).some((r) => renderArn(r).endsWith(':key/*'));
      const statements = serviceStatements(id, 'kms').filter((s) => !signingKeys(s));

      expect(statements.length).toBeGreaterThan(0);
      for (const s of statements) {
        if (s.Condition?.StringEquals?.['kms:EncryptionContext:purpose'] !== undefined) continue;
        expect(s.Resource).toEqual({ 'Fn::GetAtt': [ids.key, 'Arn'] });
        const via = JSON.stringify(s.Condition?.StringEquals?.['kms:ViaService']);
        expect(via).toMatch(/"(dynamodb|secretsmanager)\."/);
        if (via.includes('secretsmanager')) {
          expect(renderArn(s.Condition?.StringLike?.['kms:EncryptionContext:SecretARN'])).toBe(
            SECRETS_UNDER_PREFIX,
          );
        }
      }
    }
  });

  it('lets only the token and refresh functions seal and open cached tokens, under the token-cache context', () => {
    const sealing = (id: string) =>
      serviceStatements(id, 'kms').filter(
        (s) => s.Condition?.StringEquals?.['kms:EncryptionContext:purpose'],
      );
    for (const id of [ids.token, ids.refresh]) {
      expect(sealing(id)).toEqual([
        expect.objectContaining({
          Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
          Resource: { 'Fn::GetAtt': [ids.key, 'Arn'] },
          Condition: { StringEquals: { 'kms:EncryptionContext:purpose': 'token-broker:token-cache' } },
        }),
      ]);
    }
    expect(sealing(ids.admin)).toEqual([]);
  });

  it('lets the token and refresh functions decrypt secrets but never encrypt new ones', () => {
    for (const id of [ids.token, ids.refresh]) {
      const kmsViaSecrets = serviceStatements(id, 'kms').filter((s) =>
        JSON.stringify(s.Condition).includes('secretsmanager'),
      );

      expect(kmsViaSecrets.map((s) => s.Action)).toEqual(['kms:Decrypt']);
    }
  });

  it('uses "*" as a resource only for actions without resource types: X-Ray, and kms:CreateKey under conditions', () => {
    const wildcards = Object.values(resourcesOfType(template, 'AWS::IAM::Policy'))
      .flatMap((p) => asArray((p.Properties.PolicyDocument as { Statement: StatementJson[] }).Statement))
      .filter((s) => asArray(s.Resource).includes('*'));
    const others = wildcards.filter((s) => !asArray(s.Action).every((a) => a.startsWith('xray:')));

    expect(others.map((s) => s.Action)).toEqual(['kms:CreateKey']);
    // The tag and key-spec conditions of test/infra/credentials-iam.test.ts.
    expect(Object.keys(others[0]?.Condition ?? {}).sort()).toEqual([
      'ForAllValues:StringEquals',
      'Null',
      'StringEquals',
    ]);
  });

  it('attaches no AWS managed policy to any role', () => {
    for (const role of Object.values(resourcesOfType(template, 'AWS::IAM::Role'))) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('lets each function write only to its own log group', () => {
    for (const id of [ids.token, ids.admin, ids.refresh]) {
      const logGroupId = (fnProps(id).LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      const logs = serviceStatements(id, 'logs');

      expect(logs).toEqual([
        {
          Effect: 'Allow',
          Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          Resource: { 'Fn::GetAtt': [logGroupId, 'Arn'] },
        },
      ]);
    }
  });
});

describe('operations', () => {
  const alarms = () =>
    Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm')).map((a) => a.Properties);

  it('alarms when more than 5% of API requests fail with a 5xx', () => {
    const alarm = alarms().find((a) => a.AlarmName === 'token-broker-dev-api-5xx-rate');
    const metrics = JSON.stringify(alarm?.Metrics);

    expect(alarm?.Threshold).toBe(5);
    expect(metrics).toContain('5XXError');
    expect(metrics).toContain('"Count"');
  });

  it('alarms on errors and on throttles of each function', () => {
    for (const id of [ids.token, ids.admin]) {
      const metricNames = alarms()
        .filter((a) => JSON.stringify(a.Dimensions ?? []).includes(id))
        .map((a) => a.MetricName)
        .sort();
      expect(metricNames).toEqual(['Errors', 'Throttles']);
    }
  });

  it('alarms on errors of the scheduled refresh function', () => {
    const metricNames = alarms()
      .filter((a) => JSON.stringify(a.Dimensions ?? []).includes(ids.refresh))
      .map((a) => a.MetricName);

    expect(metricNames).toEqual(['Errors']);
  });

  it('alarms on the EntraFailures metric the handlers emit', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: ENTRA_FAILURES_METRIC.namespace,
      MetricName: ENTRA_FAILURES_METRIC.metricName,
      Dimensions: [{ Name: 'service', Value: ENTRA_FAILURES_METRIC.service }],
      Statistic: 'Sum',
    });
  });

  it("notifies the broker's own alarm topic of every alarm and every return to OK when no topic is given", () => {
    const topicId = Object.keys(resourcesOfType(template, 'AWS::SNS::Topic'))[0] as string;

    expect(alarms()).toHaveLength(10);
    for (const a of alarms()) {
      expect(a).toMatchObject({ AlarmActions: [{ Ref: topicId }], OKActions: [{ Ref: topicId }] });
    }
  });

  it('outputs the API URL, the alarm topic, the table names, the KMS key ARN and the secret prefix', () => {
    const outputs = template.findOutputs('*') as Record<string, { Value: unknown }>;

    expect(Object.keys(outputs).sort()).toEqual([
      'AlarmTopicArn',
      'ApiUrl',
      'KmsKeyArn',
      'SecretPrefix',
      'ServicesTableName',
      'TokenCacheTableName',
    ]);
    expect(outputs.ServicesTableName?.Value).toEqual({ Ref: ids.services });
    expect(outputs.TokenCacheTableName?.Value).toEqual({ Ref: ids.cache });
    expect(outputs.KmsKeyArn?.Value).toEqual({ 'Fn::GetAtt': [ids.key, 'Arn'] });
    expect(outputs.AlarmTopicArn?.Value).toEqual({
      Ref: Object.keys(resourcesOfType(template, 'AWS::SNS::Topic'))[0],
    });
  });
});

describe('Control Tower proactive controls (cfn-guard)', () => {
  const keyStatements = () =>
    (
      (Object.values(resourcesOfType(template, 'AWS::KMS::Key'))[0] as CfnResourceJson).Properties
        .KeyPolicy as {
        Statement: StatementJson[];
      }
    ).Statement;
  const keyStatement = (sid: string) => keyStatements().find((s) => s.Sid === sid);
  const stage = () =>
    Object.values(resourcesOfType(template, 'AWS::ApiGateway::Stage'))[0] as CfnResourceJson;
  const apiId = () => Object.keys(resourcesOfType(template, 'AWS::ApiGateway::RestApi'))[0] as string;

  it('passes, with acknowledged exceptions only: token cache PITR, environment-agnostic permissions, no VPC', () => {
    const report = guardReport(synthesized.assembly.directory);
    const permissions = Object.keys(resourcesOfType(template, 'AWS::Lambda::Permission')).filter(
      (id) =>
        resourcesOfType(template, 'AWS::Lambda::Permission')[id]?.Properties.Principal ===
        'apigateway.amazonaws.com',
    );

    expect(report.violations).toEqual([]);
    expect(Object.keys(report.acknowledged).sort()).toEqual([
      'dynamodb_table_pitr_enabled_check',
      'lambda_function_public_access_prohibited_check',
      'lambda_inside_vpc_check',
    ]);
    expect(report.acknowledged.dynamodb_table_pitr_enabled_check).toEqual([
      'TokenBroker-dev/TokenBroker/TokenCacheTable/Resource',
    ]);
    expect(report.acknowledged.lambda_function_public_access_prohibited_check).toHaveLength(
      permissions.length,
    );
    expect(report.acknowledged.lambda_inside_vpc_check).toEqual(
      ['Admin', 'Delegated', 'Refresh', 'Token'].map(
        (f) => `TokenBroker-dev/TokenBroker/${f}Function/Resource`,
      ),
    );
  });

  it('logs API Gateway execution at ERROR, never with data trace, into an encrypted log group of its own', () => {
    const settings = (stage().Properties.MethodSettings as Array<Record<string, unknown>>)[0];
    const execution = Object.entries(resourcesOfType(template, 'AWS::Logs::LogGroup')).find(
      ([, g]) => g.Properties.LogGroupName !== undefined,
    );

    expect(settings).toMatchObject({
      HttpMethod: '*',
      ResourcePath: '/*',
      LoggingLevel: 'ERROR',
      DataTraceEnabled: false,
    });
    expect(execution?.[1].Properties).toMatchObject({
      LogGroupName: {
        'Fn::Join': ['', ['API-Gateway-Execution-Logs_', { Ref: apiId() }, '/dev']],
      },
      KmsKeyId: { 'Fn::GetAtt': [ids.key, 'Arn'] },
      RetentionInDays: 365,
    });
    expect(asArray((stage() as { DependsOn?: string[] }).DependsOn)).toContain(execution?.[0]);
  });

  it("encrypts every log group with the broker key, which CloudWatch Logs may use for this stack's log groups only", () => {
    const groups = Object.values(resourcesOfType(template, 'AWS::Logs::LogGroup'));
    const logs = keyStatement('AllowCloudWatchLogsForBrokerLogGroups');

    expect(groups).toHaveLength(6);
    for (const g of groups) expect(g.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [ids.key, 'Arn'] });
    expect(JSON.stringify(logs?.Principal)).toContain('"logs."');
    expect(
      asArray(logs?.Condition?.ArnLike?.['kms:EncryptionContext:aws:logs:arn'] as unknown[])
        .map(renderArn)
        .sort(),
    ).toEqual([
      'arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:<AWS::StackName>-*',
      `arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:API-Gateway-Execution-Logs_<${apiId()}>/dev`,
    ]);
  });

  it('lets nobody create grants on the key unless for an AWS resource (kms:GrantIsForAWSResource)', () => {
    expect(keyStatement('DenyGrantsNotForAwsResources')).toMatchObject({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 'kms:CreateGrant',
      Condition: {
        BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' },
      },
    });
  });

  it('encrypts the alarm topic with the broker key, HTTPS only, open to CloudWatch for the broker alarms only', () => {
    const [topicId, topic] = Object.entries(resourcesOfType(template, 'AWS::SNS::Topic'))[0] as [
      string,
      CfnResourceJson,
    ];
    const policy = Object.values(resourcesOfType(template, 'AWS::SNS::TopicPolicy'))[0]?.Properties
      .PolicyDocument as { Statement: StatementJson[] };

    expect(topic.Properties).toMatchObject({
      TopicName: 'token-broker-dev-alarms',
      KmsMasterKeyId: { 'Fn::GetAtt': [ids.key, 'Arn'] },
    });
    expect(policy.Statement).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Effect: 'Deny',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }),
        expect.objectContaining({
          Effect: 'Allow',
          Principal: { Service: 'cloudwatch.amazonaws.com' },
          Action: 'sns:Publish',
          Resource: { Ref: topicId },
          Condition: {
            StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
            ArnLike: { 'aws:SourceArn': expect.anything() },
          },
        }),
      ]),
    );
    expect(
      renderArn(
        keyStatement('AllowCloudWatchAlarmsToPublishToAlarmTopic')?.Condition?.StringEquals?.[
          'kms:EncryptionContext:aws:sns:topicArn'
        ],
      ),
    ).toBe('arn:<AWS::Partition>:sns:<AWS::Region>:<AWS::AccountId>:token-broker-dev-alarms');
  });

  it("names API Gateway's method and this account in every permission to invoke a function", () => {
    const permissions = Object.values(resourcesOfType(template, 'AWS::Lambda::Permission')).filter(
      (p) => p.Properties.Principal === 'apigateway.amazonaws.com',
    );

    expect(permissions).toHaveLength(ROUTES.reduce((n, r) => n + r.methods.length, 0));
    for (const p of permissions) {
      expect(renderArn(p.Properties.SourceArn)).toMatch(/^arn:<AWS::Partition>:execute-api:<AWS::Region>:/);
      expect(p.Properties.SourceAccount).toEqual({ Ref: 'AWS::AccountId' });
    }
  });

  it('fails the synthesis on a finding nobody acknowledged', () => {
    const outdir = mkdtempSync(path.join(tmpdir(), 'token-broker-guard-'));
    const app = createCheckedApp({ outdir, context: NO_BUNDLING });
    new LogGroup(new Stack(app, 'Unencrypted'), 'Logs', { removalPolicy: RemovalPolicy.DESTROY });

    expect(() => app.synth()).toThrow(/CT\.CLOUDWATCH\.PR\.3/);
    expect(guardReport(outdir).violations).toEqual(['cloudwatch_log_group_encrypted_check']);
  });
});

describe('cdk-nag', () => {
  it("passes the AwsSolutions checks, with the construct's acknowledgements", () => {
    const report = new AwsSolutionsChecks().validateScope(stack);

    expect(report.violations).toEqual([]);
  });

  it('gives every acknowledgement a reason', () => {
    const acknowledgements = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));

    expect(acknowledgements.length).toBeGreaterThan(0);
    for (const [id, reason] of acknowledgements)
      expect({ id, reason: reason.length >= 40 }).toEqual({ id, reason: true });
  });
});
