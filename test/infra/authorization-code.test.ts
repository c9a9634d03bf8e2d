/**
 * The authorization code flow in the CDK template: the consent callback is the one method without an authorizer
 * (with its own throttling and a reasoned cdk-nag acknowledgement), every other method keeps IAM, the delegated
 * function gets exactly its tables and KMS purposes, and grantUserTokenAccess names one service's routes.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type { TokenBrokerStack } from '../../infra/stack';
import { ROUTES } from '../../lib/routes';
import { type SynthesizedBroker, synthesizeBroker, synthesizeBrokerProps } from './synth';
import {
  allowedResourcesByAction,
  apiMethods,
  asArray,
  functionRoleId,
  logicalIdOf,
  resourcesOfType,
  roleStatements,
} from './template';

let synthesized: SynthesizedBroker;
let workload: iam.Role;

beforeAll(() => {
  synthesized = synthesizeBroker(
    {},
    {
      bundle: false,
      customize: (stack: TokenBrokerStack) => {
        workload = new iam.Role(stack, 'MailWorkload', {
          assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        });
        stack.broker.grantUserTokenAccess(workload, 'mail');
      },
    },
  );
});

const SSO = ROUTES.find((r) => r.auth === 'none');

describe('the consent callback in API Gateway', () => {
  it('is the only route without IAM, and it is the sso route', () => {
    expect(ROUTES.filter((r) => r.auth === 'none').map((r) => r.resource)).toEqual(['/api/v2/{service}/sso']);
  });

  it('gives GET sso no authorizer while every other method keeps AWS_IAM', () => {
    const methods = apiMethods(synthesized.template);
    const open = methods.filter((m) => m.properties.AuthorizationType !== 'AWS_IAM');

    expect(open.map((m) => `${m.method} ${m.path} ${m.properties.AuthorizationType}`)).toEqual([
      `GET ${SSO?.resource} NONE`,
    ]);
    expect(methods.length).toBeGreaterThan(10);
  });

  it('throttles the callback on its own, lower than the stage', () => {
    const stage = Object.values(resourcesOfType(synthesized.template, 'AWS::ApiGateway::Stage'))[0];
    const settings =
      (stage?.Properties as { MethodSettings?: Array<Record<string, unknown>> } | undefined)
        ?.MethodSettings ?? [];

    expect(settings).toContainEqual(
      expect.objectContaining({
        HttpMethod: 'GET',
        ResourcePath: '/~1api~1v2~1{service}~1sso',
        ThrottlingRateLimit: 5,
        ThrottlingBurstLimit: 10,
      }),
    );
  });

  it('integrates the delegated routes with the delegated function', () => {
    const { stack } = synthesized;
    const fnId = logicalIdOf(stack, stack.broker.delegatedFunction);
    const methods = apiMethods(synthesized.template);
    for (const route of ROUTES.filter((r) => r.function === 'delegated')) {
      for (const method of route.methods) {
        const found = methods.find((m) => m.path === route.resource && m.method === method);
        expect(JSON.stringify(found?.properties.Integration)).toContain(fnId);
      }
    }
  });
});

describe('the delegated function', () => {
  it('may use the user grants table, the token cache and the services table with the actions of its adapters', () => {
    const { stack, template } = synthesized;
    const role = functionRoleId(template, logicalIdOf(stack, stack.broker.delegatedFunction));
    const byTable: Record<string, string[]> = {};
    for (const s of roleStatements(template, role).filter((st) =>
      asArray(st.Action).some((a) => a.startsWith('dynamodb:')),
    )) {
      for (const r of asArray(s.Resource)) {
        const table = (r as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
        byTable[table] = [...(byTable[table] ?? []), ...asArray(s.Action)].sort();
      }
    }

    expect(byTable).toEqual({
      [logicalIdOf(stack, stack.broker.servicesTable)]: ['dynamodb:GetItem'],
      [logicalIdOf(stack, stack.broker.tokenCacheTable)]: [
        'dynamodb:BatchWriteItem',
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
      ],
      [logicalIdOf(stack, stack.broker.userGrantsTable)]: [
        'dynamodb:DeleteItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ],
    });
  });

  it('seals users’ refresh tokens and verifiers only under their KMS purposes', () => {
    const { stack, template } = synthesized;
    const role = functionRoleId(template, logicalIdOf(stack, stack.broker.delegatedFunction));
    const purposes = roleStatements(template, role)
      .map((s) => (s.Condition as { StringEquals?: Record<string, unknown> } | undefined)?.StringEquals)
      .map((c) => c?.['kms:EncryptionContext:purpose'])
      .filter((p) => p !== undefined);

    expect(purposes).toContainEqual(['token-broker:refresh-token', 'token-broker:pkce-verifier']);
  });

  it('is told its table in TOKEN_BROKER_USER_GRANTS_TABLE; the token function is not', () => {
    const { stack, template } = synthesized;
    const fns = resourcesOfType(template, 'AWS::Lambda::Function');
    const env = (fn: string) =>
      (fns[fn]?.Properties as { Environment?: { Variables: Record<string, unknown> } } | undefined)
        ?.Environment?.Variables ?? {};

    expect(env(logicalIdOf(stack, stack.broker.delegatedFunction)).TOKEN_BROKER_USER_GRANTS_TABLE).toEqual({
      Ref: logicalIdOf(stack, stack.broker.userGrantsTable),
    });
    expect(
      env(logicalIdOf(stack, stack.broker.tokenFunction)).TOKEN_BROKER_USER_GRANTS_TABLE,
    ).toBeUndefined();
  });
});

describe('grantUserTokenAccess', () => {
  it('lets the grantee invoke exactly one service’s authorize and user_token routes, never sso', () => {
    const { stack, template } = synthesized;
    const statements = roleStatements(template, logicalIdOf(stack, workload));
    const allowed = allowedResourcesByAction(statements, 'execute-api')['execute-api:Invoke'] ?? [];
    const tails = allowed.map((arn) => /[A-Z]+\/api\/.*$/.exec(arn)?.[0]).sort();

    expect(tails).toEqual([
      'DELETE/api/v2/mail/user_token',
      'GET/api/v2/mail/authorize',
      'GET/api/v2/mail/user_token',
    ]);
  });

  it('refuses a wildcard service name', () => {
    const { stack } = synthesized;

    expect(() => stack.broker.grantUserTokenAccess(new iam.AnyPrincipal(), '*')).toThrow(
      /not a valid service name/,
    );
  });
});

describe('with a resource policy', () => {
  it('lets anyone call the consent callback while other routes still need an allowed account', () => {
    const { template } = synthesizeBrokerProps({ allowedAccountIds: ['111122223333'] }, { bundle: false });
    const api = Object.values(resourcesOfType(template, 'AWS::ApiGateway::RestApi'))[0];
    const statements =
      (api?.Properties as { Policy?: { Statement: Array<Record<string, unknown>> } } | undefined)?.Policy
        ?.Statement ?? [];
    const callback = statements.find((s) => s.Sid === 'AllowConsentCallback');

    expect(callback).toMatchObject({
      Effect: 'Allow',
      Principal: { AWS: '*' },
      Resource: 'execute-api:/*/GET/api/v2/*/sso',
    });
  });
});
