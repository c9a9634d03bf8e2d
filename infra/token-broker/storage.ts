import { ArnFormat, Aws, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { SERVICES_TABLE, TOKEN_CACHE_TABLE, USER_GRANTS_TABLE } from '../../lib/tables';
import type { ResolvedBrokerProps } from './props';

/** The broker's state: the services table, the token cache table and the key that encrypts both (and the secrets). */
export interface BrokerStorage {
  readonly key: kms.Key;
  readonly servicesTable: dynamodb.Table;
  readonly tokenCacheTable: dynamodb.Table;
  /** The authorization code flow's users: sealed refresh tokens and pending consent states. */
  readonly userGrantsTable: dynamodb.Table;
}

/**
 * Creates the key and the tables in `scope` (the broker construct itself, so their construct paths, and with them
 * their logical ids, are those of the first release: see test/infra/logical-ids.test.ts).
 */
export function createStorage(scope: Construct, props: ResolvedBrokerProps): BrokerStorage {
  const { removalPolicy } = props;
  const key = new kms.Key(scope, 'Key', {
    description: `Token Broker (${props.stage}): DynamoDB tables and service secrets`,
    alias: `alias/${props.namePrefix}`,
    enableKeyRotation: true,
    removalPolicy,
    pendingWindow: Duration.days(7),
  });
  // Control Tower CT.KMS.PR.3: grants only for AWS services acting on a resource (DynamoDB creates grants on the
  // key for the tables); nobody can hand out standing rights to the key with a grant.
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'DenyGrantsNotForAwsResources',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['kms:CreateGrant'],
      resources: ['*'],
      conditions: {
        BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' },
      },
    }),
  );

  const servicesTable = new dynamodb.Table(scope, 'ServicesTable', {
    partitionKey: { name: SERVICES_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
    removalPolicy,
  });

  const tokenCacheTable = new dynamodb.Table(scope, 'TokenCacheTable', {
    partitionKey: { name: TOKEN_CACHE_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: TOKEN_CACHE_TABLE.sortKey, type: dynamodb.AttributeType.STRING },
    timeToLiveAttribute: TOKEN_CACHE_TABLE.ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const noPitr =
    'The token cache holds only access tokens that Entra issues again on a miss, each item expiring by TTL within ' +
    'about 90 minutes; point-in-time recovery would restore nothing of value (a restored token is expired or ' +
    'about to be) and would keep copies of live, if sealed, tokens for 35 days.';
  Validations.of(tokenCacheTable).acknowledge(
    { id: 'AwsSolutions-DDB3', reason: noPitr },
    { id: 'cdk-validator-cfnguard::dynamodb_table_pitr_enabled_check', reason: noPitr },
  );

  // Users' refresh tokens (sealed by the application as well) are durable: losing them means every user consents
  // again, so the table keeps point-in-time recovery and the removal policy of the services table.
  const userGrantsTable = new dynamodb.Table(scope, 'UserGrantsTable', {
    partitionKey: { name: USER_GRANTS_TABLE.partitionKey, type: dynamodb.AttributeType.STRING },
    sortKey: { name: USER_GRANTS_TABLE.sortKey, type: dynamodb.AttributeType.STRING },
    timeToLiveAttribute: USER_GRANTS_TABLE.ttlAttribute,
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
    removalPolicy,
  });

  return { key, servicesTable, tokenCacheTable, userGrantsTable };
}

/**
 * Lets CloudWatch Logs use the key for the broker's log groups only: the encryption context CloudWatch Logs sends
 * names the log group, and it must be one of this stack's (CloudFormation names them `<stack name>-<logical id>-…`)
 * or one of `logGroupNames` (log groups with a fixed name). The log groups themselves cannot be referenced here:
 * they depend on the key.
 */
export function allowLogsToUseKey(key: kms.Key, logGroupNames: readonly string[]): void {
  const stack = Stack.of(key);
  const arnOf = (name: string) =>
    stack.formatArn({
      service: 'logs',
      resource: 'log-group',
      resourceName: name,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudWatchLogsForBrokerLogGroups',
      principals: [new iam.ServicePrincipal(`logs.${Aws.REGION}.amazonaws.com`)],
      actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
      resources: ['*'],
      conditions: {
        ArnLike: {
          'kms:EncryptionContext:aws:logs:arn': [`${Aws.STACK_NAME}-*`, ...logGroupNames].map(arnOf),
        },
      },
    }),
  );
}

/** A log group of the broker: encrypted with its key, kept for `logRetention`, removed as `removalPolicy` says. */
export function createLogGroup(
  scope: Construct,
  id: string,
  props: Pick<ResolvedBrokerProps, 'logRetention' | 'removalPolicy'>,
  key: kms.IKey,
  logGroupName?: string,
): logs.LogGroup {
  return new logs.LogGroup(scope, id, {
    logGroupName,
    retention: props.logRetention,
    removalPolicy: props.removalPolicy,
    encryptionKey: key,
  });
}
