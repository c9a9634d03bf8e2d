import { Stack, Token, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import type { Construct } from 'constructs';
import { SECURITY_HEADERS } from '../../lib/http';
import { type FunctionName, ROUTES } from '../../lib/routes';
import type { BrokerFunctions } from './functions';
import type { ResolvedBrokerProps } from './props';
import { brokerResourcePolicy } from './resource-policy';
import { type BrokerStorage, createLogGroup } from './storage';

/** The REST API and the log groups of its access and execution logs. */
export interface BrokerApi {
  readonly api: apigw.RestApi;
  readonly accessLogGroup: logs.LogGroup;
  /** Undefined when execution logging is OFF. */
  readonly executionLogGroup?: logs.LogGroup;
}

/**
 * The REST API in `scope`: IAM authorization on every method, every route of lib/routes.ts integrated with the
 * function that serves it, API Gateway's own answers in the API's error shape, access and execution logs
 * encrypted with the broker key, the resource policy (resource-policy.ts) and the WAF association.
 */
export function createBrokerApi(
  scope: Construct,
  props: ResolvedBrokerProps,
  storage: BrokerStorage,
  functions: Pick<BrokerFunctions, 'tokenFunction' | 'adminFunction' | 'delegatedFunction'>,
): BrokerApi {
  const accessLogGroup = createLogGroup(scope, 'AccessLogs', props, storage.key);
  const api = createRestApi(scope, props, accessLogGroup);
  // RestApi adds an "Endpoint" output to whatever stack holds it; outputs are the stack's choice (see stack.ts).
  api.node.tryRemoveChild('Endpoint');
  addRoutes(api, functions);
  restrictIntegrationPermissions(api);
  addGatewayResponses(api);
  if (props.webAclArn !== undefined) {
    new wafv2.CfnWebACLAssociation(scope, 'WebAclAssociation', {
      resourceArn: api.deploymentStage.stageArn,
      webAclArn: props.webAclArn,
    });
  }
  const executionLogGroup = createExecutionLogGroup(scope, props, storage, api);
  acknowledgeApiFindings(api, props);
  return { api, accessLogGroup, executionLogGroup };
}

/** API Gateway's execution log group name for a stage (it creates the group itself unless it exists). */
export function executionLogGroupName(api: apigw.IRestApi, stage: string): string {
  return `API-Gateway-Execution-Logs_${api.restApiId}/${stage}`;
}

/**
 * The execution logs' log group, created before the stage under the name API Gateway writes to, so it is
 * encrypted with the broker key and kept for `logRetention` instead of forever. Undefined when logging is OFF.
 */
function createExecutionLogGroup(
  scope: Construct,
  props: ResolvedBrokerProps,
  storage: BrokerStorage,
  api: apigw.RestApi,
): logs.LogGroup | undefined {
  if (props.executionLogLevel === apigw.MethodLoggingLevel.OFF) return undefined;
  const group = createLogGroup(
    scope,
    'ExecutionLogs',
    props,
    storage.key,
    executionLogGroupName(api, props.stage),
  );
  api.deploymentStage.node.addDependency(group);
  return group;
}

/** The JSON error body of the API, as API Gateway itself must send it too. */
function errorBody(code: number, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

/**
 * API Gateway's own errors, each with the status it answers with. Its error templates are not VTL: they can
 * substitute `$context` variables but cannot compute the status, so every type is listed with its code.
 */
const GATEWAY_ERRORS: ReadonlyArray<readonly [apigw.ResponseType, number, string?]> = [
  [apigw.ResponseType.ACCESS_DENIED, 403],
  [apigw.ResponseType.API_CONFIGURATION_ERROR, 500],
  [apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, 500],
  [apigw.ResponseType.AUTHORIZER_FAILURE, 500],
  [apigw.ResponseType.BAD_REQUEST_PARAMETERS, 400],
  [apigw.ResponseType.BAD_REQUEST_BODY, 400],
  [apigw.ResponseType.EXPIRED_TOKEN, 403],
  [apigw.ResponseType.INTEGRATION_FAILURE, 504],
  [apigw.ResponseType.INTEGRATION_TIMEOUT, 504],
  [apigw.ResponseType.INVALID_API_KEY, 403],
  [apigw.ResponseType.INVALID_SIGNATURE, 403],
  // Every path and method has a method (see addRoutes), so this only answers requests that are not signed.
  [
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
    403,
    'missing authentication token: sign the request with AWS Signature Version 4 for the execute-api service',
  ],
  [apigw.ResponseType.QUOTA_EXCEEDED, 429],
  [apigw.ResponseType.REQUEST_TOO_LARGE, 413],
  [apigw.ResponseType.RESOURCE_NOT_FOUND, 404],
  [apigw.ResponseType.THROTTLED, 429],
  [apigw.ResponseType.UNAUTHORIZED, 401],
  [apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE, 415],
  [apigw.ResponseType.WAF_FILTERED, 403],
];

function createRestApi(
  scope: Construct,
  props: ResolvedBrokerProps,
  accessLogGroup: logs.LogGroup,
): apigw.RestApi {
  const { endpointType } = props;
  const vpcEndpoints = props.vpcEndpoints ?? [];

  return new apigw.RestApi(scope, 'Api', {
    restApiName: props.namePrefix,
    description: `Token Broker (${props.stage}): Entra client-credentials tokens for AWS workloads`,
    endpointConfiguration: {
      types: [endpointType === 'PRIVATE' ? apigw.EndpointType.PRIVATE : apigw.EndpointType.REGIONAL],
      vpcEndpoints: vpcEndpoints.length > 0 ? vpcEndpoints : undefined,
    },
    policy: brokerResourcePolicy(props),
    cloudWatchRole: false,
    failOnWarnings: true,
    defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
    deployOptions: {
      stageName: props.stage,
      throttlingRateLimit: props.throttlingRateLimit ?? 50,
      throttlingBurstLimit: props.throttlingBurstLimit ?? 100,
      // The unauthenticated consent callback gets its own, lower limits: a flood of forged callbacks cannot use
      // up the stage's budget for workloads.
      methodOptions: Object.fromEntries(
        ROUTES.filter((r) => r.auth === 'none').flatMap((r) =>
          r.methods.map((m) => [`${r.resource}/${m}`, OPEN_METHOD_THROTTLING] as const),
        ),
      ),
      tracingEnabled: true,
      loggingLevel: props.executionLogLevel,
      // Never: request and response bodies carry tokens and client secrets.
      dataTraceEnabled: false,
      accessLogDestination: new apigw.LogGroupLogDestination(accessLogGroup),
      accessLogFormat: apigw.AccessLogFormat.custom(
        JSON.stringify({
          requestId: apigw.AccessLogField.contextRequestId(),
          extendedRequestId: apigw.AccessLogField.contextExtendedRequestId(),
          requestTime: apigw.AccessLogField.contextRequestTime(),
          httpMethod: apigw.AccessLogField.contextHttpMethod(),
          resourcePath: apigw.AccessLogField.contextResourcePath(),
          path: apigw.AccessLogField.contextPath(),
          status: apigw.AccessLogField.contextStatus(),
          protocol: apigw.AccessLogField.contextProtocol(),
          responseLength: apigw.AccessLogField.contextResponseLength(),
          responseLatency: apigw.AccessLogField.contextResponseLatency(),
          integrationLatency: apigw.AccessLogField.contextIntegrationLatency(),
          integrationStatus: apigw.AccessLogField.contextIntegrationStatus(),
          errorType: apigw.AccessLogField.contextErrorResponseType(),
          errorMessage: apigw.AccessLogField.contextErrorMessage(),
          sourceIp: apigw.AccessLogField.contextIdentitySourceIp(),
          callerAccountId: apigw.AccessLogField.contextIdentityAccountId(),
          userArn: apigw.AccessLogField.contextIdentityUserArn(),
          principalOrgId: apigw.AccessLogField.contextIdentityPrincipalOrgId(),
          vpceId: '$context.identity.vpceId',
          userAgent: apigw.AccessLogField.contextIdentityUserAgent(),
          xrayTraceId: apigw.AccessLogField.contextXrayTraceId(),
        }),
      ),
    },
  });
}

/**
 * Methods for every route in ROUTES, integrated with the function that serves it. Everything else is
 * answered by API Gateway itself in the API's error shape, also behind IAM: 405 for a route's other methods,
 * 404 for any other path (a `{proxy+}` catch-all plus ANY on the resources between root and the routes).
 */
function addRoutes(
  api: apigw.RestApi,
  functions: Pick<BrokerFunctions, 'tokenFunction' | 'adminFunction' | 'delegatedFunction'>,
): void {
  const integrations: Record<FunctionName, apigw.Integration> = {
    token: new apigw.LambdaIntegration(functions.tokenFunction, { allowTestInvoke: false }),
    admin: new apigw.LambdaIntegration(functions.adminFunction, { allowTestInvoke: false }),
    delegated: new apigw.LambdaIntegration(functions.delegatedFunction, { allowTestInvoke: false }),
  };
  const routePaths = new Set<string>();
  for (const route of ROUTES) {
    const resource = api.root.resourceForPath(route.resource);
    for (const method of route.methods) {
      const created = resource.addMethod(
        method,
        integrations[route.function],
        route.auth === 'none' ? { authorizationType: apigw.AuthorizationType.NONE } : {},
      );
      if (route.auth === 'none') acknowledgeOpenMethod(created);
    }
    const allow = route.methods.join(', ');
    resource.addMethod(
      'ANY',
      ...mockErrorMethod(405, `method not allowed here; allowed: ${allow}`, { Allow: allow }),
    );
    routePaths.add(route.resource);
  }
  const notFound = mockErrorMethod(404, 'no route matches this path');
  const between = new Set<string>(['/']);
  for (const route of ROUTES) {
    const segments = route.resource.split('/').filter((s) => s.length > 0);
    for (let i = 1; i < segments.length; i++) between.add(`/${segments.slice(0, i).join('/')}`);
  }
  for (const resourcePath of between) {
    if (routePaths.has(resourcePath)) continue;
    const resource = resourcePath === '/' ? api.root : api.root.resourceForPath(resourcePath);
    resource.addMethod('ANY', ...notFound);
  }
  api.root.addResource('{proxy+}').addMethod('ANY', ...notFound);
}

function addGatewayResponses(api: apigw.RestApi): void {
  const responseHeaders = Object.fromEntries(
    Object.entries(SECURITY_HEADERS)
      .filter(([name]) => name !== 'Content-Type')
      .map(([name, value]) => [name, `'${value}'`]),
  );
  const template = (code: number, message?: string): string =>
    `{"error":{"code":${code},"message":${message === undefined ? '$context.error.messageString' : JSON.stringify(message)},` +
    `"context":{"request_id":"$context.requestId"}}}`;
  for (const [type, code, message] of GATEWAY_ERRORS) {
    api.addGatewayResponse(`GatewayResponse${type.responseType}`, {
      type,
      statusCode: String(code),
      responseHeaders,
      templates: { 'application/json': template(code, message) },
    });
  }
  // Only reached by response types API Gateway adds later. Their status line stays right (a status on a
  // DEFAULT_* response would override every type's status), but the template cannot know the exact code.
  api.addGatewayResponse('GatewayResponseDEFAULT_4XX', {
    type: apigw.ResponseType.DEFAULT_4XX,
    responseHeaders,
    templates: { 'application/json': template(400) },
  });
  api.addGatewayResponse('GatewayResponseDEFAULT_5XX', {
    type: apigw.ResponseType.DEFAULT_5XX,
    responseHeaders,
    templates: { 'application/json': template(500) },
  });
}

/** Stage throttling of the methods without IAM (the consent callback): a person's browser calls it once. */
export const OPEN_METHOD_THROTTLING: apigw.MethodDeploymentOptions = {
  throttlingRateLimit: 5,
  throttlingBurstLimit: 10,
};

/** cdk-nag on the one method without IAM, with the reason it needs none. */
function acknowledgeOpenMethod(method: apigw.Method): void {
  const reason =
    'The consent callback (GET /api/v2/{service}/sso) is called by the user’s browser coming back from Entra, ' +
    'which cannot sign with SigV4. It is authenticated by the single-use state (256 bits, bound to service, ' +
    'user and caller, 10 minutes), PKCE and the id_token’s signature; it has its own lower throttling.';
  Validations.of(method).acknowledge(
    { id: 'AwsSolutions-APIG4', reason },
    { id: 'AwsSolutions-COG4', reason },
  );
}

function acknowledgeApiFindings(api: apigw.RestApi, props: ResolvedBrokerProps): void {
  Validations.of(api).acknowledge(
    {
      id: 'AwsSolutions-APIG2',
      reason:
        'Requests are validated in the handlers with the same zod schemas that document the API; an API Gateway ' +
        'model would be a second schema that drifts. Unknown routes and methods are refused by API Gateway.',
    },
    {
      id: 'AwsSolutions-COG4',
      reason:
        'Callers are AWS workloads: every method uses AWS_IAM (SigV4) authorization, with per-service ' +
        'execute-api:Invoke grants. A Cognito user pool authorizer is for end users and does not apply.',
    },
  );
  if (props.webAclArn === undefined) {
    Validations.of(api).acknowledge({
      id: 'AwsSolutions-APIG3',
      reason:
        'Every method requires SigV4 (unsigned requests never reach a function) and the stage is throttled; ' +
        'a WAF web ACL can be associated with the webAclArn prop where the organisation runs one.',
    });
  }
  if (props.executionLogLevel === apigw.MethodLoggingLevel.OFF) {
    const reason =
      'Execution logging was turned off with executionLogLevel OFF (for an account without the API Gateway ' +
      'CloudWatch Logs role); JSON access logs still record every request with its caller and error.';
    Validations.of(api).acknowledge(
      { id: 'AwsSolutions-APIG6', reason },
      { id: 'cdk-validator-cfnguard::api_gw_v1_execution_logging_enabled_check', reason },
    );
  }
}

/**
 * API Gateway's permissions to invoke the functions name the method in SourceArn; SourceAccount adds the account
 * (Control Tower CT.LAMBDA.PR.2). With an environment-agnostic stack the account is only known at deploy time.
 */
function restrictIntegrationPermissions(api: apigw.RestApi): void {
  const account = Stack.of(api).account;
  for (const permission of api.node.findAll().filter((c) => c instanceof lambda.CfnPermission)) {
    (permission as lambda.CfnPermission).sourceAccount = account;
  }
  if (Token.isUnresolved(account)) {
    Validations.of(api).acknowledge({
      id: 'cdk-validator-cfnguard::lambda_function_public_access_prohibited_check',
      reason:
        "Each permission names API Gateway's principal, this API's method in SourceArn and this account in " +
        'SourceAccount; the stack is environment-agnostic, so both are CloudFormation expressions the synth-time ' +
        "rule cannot read (it accepts literal strings). Control Tower's deploy-time hook sees the resolved values.",
    });
  }
}

/** A MOCK integration and method options that answer `status` in the API's error shape. */
function mockErrorMethod(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): [apigw.MockIntegration, apigw.MethodOptions] {
  // Content-Type comes from the response template's media type.
  const allHeaders = Object.fromEntries(
    Object.entries({ ...SECURITY_HEADERS, ...headers }).filter(([name]) => name !== 'Content-Type'),
  );
  const integration = new apigw.MockIntegration({
    // NEVER: the request body is not passed through, so the caller cannot choose the mock's answer.
    passthroughBehavior: apigw.PassthroughBehavior.NEVER,
    requestTemplates: { 'application/json': `{"statusCode": ${status}}` },
    integrationResponses: [
      {
        statusCode: String(status),
        responseTemplates: { 'application/json': errorBody(status, message) },
        responseParameters: Object.fromEntries(
          Object.entries(allHeaders).map(([name, value]) => [`method.response.header.${name}`, `'${value}'`]),
        ),
      },
    ],
  });
  const options: apigw.MethodOptions = {
    methodResponses: [
      {
        statusCode: String(status),
        responseParameters: Object.fromEntries(
          Object.keys(allHeaders).map((name) => [`method.response.header.${name}`, true]),
        ),
      },
    ],
  };
  return [integration, options];
}
