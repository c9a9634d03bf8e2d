import { type CfnElement, CustomResource, Duration, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { brokerEnvironment, createBrokerFunction, type FunctionContext, resourceNamesOf } from './functions';
import { acknowledgeCrossStackNetwork, acknowledgeNoVpc, grantVpcAccess } from './network';
import type { BrokerPermissions } from './permissions';
import type { DeclaredService } from './props';
import { createLogGroup } from './storage';

/** The custom resource declaring `services`, and its onEvent handler. */
export interface DeclaredServicesResource {
  readonly declaredServices: CustomResource;
  readonly declareServicesFunction: nodejs.NodejsFunction;
}

/** A declared service in the admin API's shape (snake_case, `config.client_secret_arn`). */
export function declaredServiceBody(s: DeclaredService): Record<string, unknown> {
  return {
    name: s.name,
    ...(s.label !== undefined ? { label: s.label } : {}),
    ...(s.description !== undefined ? { description: s.description } : {}),
    type: 'oauth_azure_ad',
    is_active: s.isActive ?? true,
    config: {
      client_id: s.clientId,
      tenant_id: s.tenantId,
      client_secret_arn: s.clientSecretArn,
      ...(s.scopes !== undefined ? { scopes: s.scopes } : {}),
      ...(s.authorityUrl !== undefined ? { authority_url: s.authorityUrl } : {}),
      ...(s.grantType !== undefined ? { grant_type: s.grantType } : {}),
    },
  };
}

/**
 * The custom resource that declares `services` through ServiceAdministration.declare() (functions/declare-services.ts).
 * Its role gets exactly what declare() does with an ARN-referencing body: read and write the service record
 * (GetItem, PutItem; DeleteItem to undo a create that failed), clear a changed service's tokens (Query,
 * BatchWriteItem), check that the referenced secrets exist (DescribeSecret on the declared ARNs) and delete a
 * previously managed secret a declaration replaces with an ARN (DeleteSecret under the prefix). It never
 * creates a secret: a declaration cannot carry a secret value.
 */
export function createDeclaredServices(
  scope: Construct,
  context: FunctionContext,
  services: readonly DeclaredService[],
  permissions: BrokerPermissions,
): DeclaredServicesResource {
  const { props, storage, network } = context;
  const fn = createBrokerFunction(scope, 'declare-services', context, {
    description: 'Token Broker: makes the services declared in the CDK app exist as declared',
    memorySize: props.adminFunctionMemorySize,
    timeout: Duration.minutes(2),
    environment: brokerEnvironment(props, resourceNamesOf(storage)),
  });
  permissions.grantTableAccess(fn, [
    {
      table: storage.servicesTable,
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem'],
    },
    { table: storage.tokenCacheTable, actions: ['dynamodb:Query', 'dynamodb:BatchWriteItem'] },
  ]);
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['secretsmanager:DescribeSecret'],
      resources: [...new Set(services.map((s) => s.clientSecretArn))],
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['secretsmanager:DeleteSecret'],
      resources: [permissions.managedSecretsArn()],
    }),
  );
  permissions.acknowledgeSecretWildcards(fn.role as iam.Role, []);

  // The Provider framework's own function: an own role and log group instead of the managed
  // AWSLambdaBasicExecutionRole, so it may only write its own logs and invoke the handler.
  const frameworkLogs = createLogGroup(scope, 'DeclareServicesProviderLogs', props, storage.key);
  const frameworkRole = new iam.Role(scope, 'DeclareServicesProviderRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Token Broker ${props.stage}: declared-services provider framework`,
  });
  frameworkLogs.grantWrite(frameworkRole);
  if (network) grantVpcAccess(frameworkRole);
  const provider = new cr.Provider(scope, 'DeclareServicesProvider', {
    onEventHandler: fn,
    frameworkOnEventRole: frameworkRole,
    logGroup: frameworkLogs,
    ...(network ?? {}),
  });
  Validations.of(frameworkRole).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${Stack.of(scope).getLogicalId(fn.node.defaultChild as CfnElement)}.Arn>:*]`,
    reason:
      'Granted by the CDK Provider framework (grantInvoke): the framework function may invoke the ' +
      'declare-services handler, any version or alias of it; the wildcard is confined to that one function.',
  });
  if (network) {
    acknowledgeCrossStackNetwork(provider, network);
    Validations.of(frameworkRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'The network interface actions Lambda needs to attach the framework function to the VPC (those of ' +
        'AWSLambdaVPCAccessExecutionRole), whose interfaces do not exist before Lambda creates them.',
    });
  } else {
    acknowledgeNoVpc(provider);
  }

  // Declared services are retained when the resource is deleted (see functions/declare-services.ts).
  const declaredServices = new CustomResource(scope, 'DeclaredServices', {
    serviceToken: provider.serviceToken,
    resourceType: 'Custom::TokenBrokerDeclaredServices',
    properties: { Services: JSON.stringify(services.map(declaredServiceBody)) },
  });
  return { declaredServices, declareServicesFunction: fn };
}
